"""Housekeeping for the filesystem broker, the zero-setup broker of `make run` (kombu's filesystem transport).

On that transport an exchange is a file in the control folder listing its bound queues, and every message is a file
in the queue folder. Celery events (task events, worker heartbeats) go to the `celeryev` exchange, which copies each
one to every event queue ever bound to it. Flower binds a new, randomly named event queue each time it starts and,
killed with the rest of the stack, never unbinds it: with nobody reading those queues, every heartbeat and task
event left one more file behind per restart, and every poll of every process listed the growing folder.

`make run` calls `python -m mp3converter.broker` before it starts the processes. With no process of the stack
running yet, no event queue or control reply queue has a reader: their bindings and their message files go. Task
queues (`convert`, `notify`, `email`) and the workers' own control queues are left as they are, so queued jobs
survive a restart. On RabbitMQ this is not needed (an event queue there expires with its consumer) and does nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

# Exchanges whose queues belong to one process's lifetime: events (Flower, `celery events`) and control replies.
EPHEMERAL_EXCHANGES = ("celeryev", "reply.celery.pidbox")
EPHEMERAL_QUEUE_PREFIXES = ("celeryev.",)
EPHEMERAL_QUEUE_SUFFIXES = (".reply.celery.pidbox",)


@dataclass(frozen=True)
class Pruned:
    bindings: int  # event and reply queue bindings removed
    messages: int  # their message files removed


def is_ephemeral_queue(queue: str) -> bool:
    return queue.startswith(EPHEMERAL_QUEUE_PREFIXES) or queue.endswith(EPHEMERAL_QUEUE_SUFFIXES)


def _queue_of(message_file: str) -> str:
    # kombu names a message `<milliseconds>_<uuid>.<queue>.msg`.
    return message_file.partition(".")[2].removesuffix(".msg")


def broker_folder_prune(*, queue_folder: Path, control_folder: Path) -> Pruned:
    """Unbind every event and reply queue and delete their messages. Only while no process of the stack runs."""
    bindings = 0
    for exchange in EPHEMERAL_EXCHANGES:
        table = control_folder / f"{exchange}.exchange"
        try:
            with table.open("rb+", buffering=0) as file:
                fcntl.flock(file, fcntl.LOCK_EX)  # the lock kombu's own readers and writers take
                rows = json.loads(file.read() or b"[]")
                kept = [row for row in rows if not is_ephemeral_queue(row[2])]
                bindings += len(rows) - len(kept)
                file.seek(0)
                file.write(json.dumps(kept).encode())
                file.truncate()
        except FileNotFoundError:
            continue
    messages = 0
    try:
        names = os.listdir(queue_folder)
    except FileNotFoundError:
        names = []
    for name in names:
        if name.endswith(".msg") and is_ephemeral_queue(_queue_of(name)):
            try:
                (queue_folder / name).unlink()
                messages += 1
            except FileNotFoundError:
                pass
    return Pruned(bindings=bindings, messages=messages)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mp3converter.settings")
    from django.conf import settings

    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        return
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    pruned = broker_folder_prune(
        queue_folder=Path(options["data_folder_in"]), control_folder=Path(options["control_folder"])
    )
    if pruned.bindings or pruned.messages:
        print(f"broker folder: removed {pruned.bindings} stale event queues and {pruned.messages} of their messages")


if __name__ == "__main__":
    main()
