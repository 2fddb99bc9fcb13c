"""Housekeeping for the filesystem broker, the zero-setup broker of `make run` (kombu's filesystem transport).

On that transport an exchange is a file in the control folder listing its bound queues, and every message is a file
in the queue folder. Celery events (task events, worker heartbeats) go to the `celeryev` exchange, which copies each
one to every event queue ever bound to it. Flower binds a new, randomly named event queue each time it starts and,
killed with the rest of the stack, never unbinds it: with nobody reading those queues, every heartbeat and task
event left one more file behind per restart, and every poll of every process listed the growing folder.

Its transport is kombu's with three races closed (`Transport` below, named by CELERY_BROKER_TRANSPORT): kombu creates a
message file and only then writes it, so a consumer polling at that moment took an empty file, failed to decode it
and stopped the whole worker ("Unrecoverable error: JSONDecodeError"), and the message was lost; a message is now
written under a name no consumer looks at and renamed into place whole. An exchange's table was read while another
process had created it but not written it yet (the same error at start), or two processes each created it, the
second erasing the first one's binding; a table is now created, read and written under one lock. And a consumer
claims a message by renaming it into the broker's own `processed` folder, on the same filesystem, not by
`shutil.move` into TMPDIR, which copies when TMPDIR is on another filesystem and lets two consumers take one message.

`make run` calls `python -m mp3converter.broker` before it starts the processes. With no process of the stack
running yet, no event queue or control reply queue has a reader: their bindings and their message files go. Task
queues (`convert`, `notify`, `email`) and the workers' own control queues are left as they are, so queued jobs
survive a restart. On RabbitMQ this is not needed (an event queue there expires with its consumer) and does nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps, loads

# Exchanges whose queues belong to one process's lifetime: events (Flower, `celery events`) and control replies.
EPHEMERAL_EXCHANGES = ("celeryev", "reply.celery.pidbox")
EPHEMERAL_QUEUE_PREFIXES = ("celeryev.",)
EPHEMERAL_QUEUE_SUFFIXES = (".reply.celery.pidbox",)
# A message being written: a hidden name that matches no queue, renamed to its queue's name once whole.
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class Pruned:
    bindings: int  # event and reply queue bindings removed
    messages: int  # their message files removed


def is_ephemeral_queue(queue: str) -> bool:
    return queue.startswith(EPHEMERAL_QUEUE_PREFIXES) or queue.endswith(EPHEMERAL_QUEUE_SUFFIXES)


def _queue_of(message_file: str) -> str:
    # kombu names a message `<milliseconds>_<uuid>.<queue>.msg`.
    return message_file.partition(".")[2].removesuffix(".msg")


class Channel(filesystem.Channel):
    """kombu's filesystem channel, with messages and exchange tables written whole (see the module's docstring)."""

    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        folder = Path(self.data_folder_out)
        partial = folder / f".{name}{PARTIAL_SUFFIX}"
        try:
            partial.write_bytes(dumps(payload).encode())
            os.rename(partial, folder / name)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ChannelError(f"Cannot add a message to {folder}") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        folder = Path(self.data_folder_in)
        claimed_folder = Path(self.processed_folder)
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = claimed_folder / name
            try:
                os.rename(folder / name, claimed)  # atomic: only one consumer gets it
            except FileNotFoundError:
                continue  # another consumer took it first
            try:
                payload = claimed.read_bytes()
            except OSError as exc:
                raise ChannelError(f"Cannot read the message {claimed}") from exc
            finally:
                if not self.store_processed:
                    claimed.unlink(missing_ok=True)
            return loads(payload.decode())
        raise filesystem.Empty()

    def get_table(self, exchange):
        with _locked_table(self._exchange_file(exchange), fcntl.LOCK_SH, create=False) as (rows, _):
            return [filesystem.exchange_queue_t(*row) for row in rows]

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        self.control_folder.mkdir(exist_ok=True)
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with _locked_table(self._exchange_file(exchange), fcntl.LOCK_EX, create=True) as (rows, write):
            bindings = [filesystem.exchange_queue_t(*row) for row in rows]
            if binding not in bindings:
                write([binding, *bindings])


class Transport(filesystem.Transport):
    Channel = Channel


class _locked_table:
    """An exchange's table under an flock: (rows, write). An empty or missing file is an empty table."""

    def __init__(self, path: Path, mode: int, *, create: bool):
        self.path, self.mode, self.create = path, mode, create
        self.fd = -1

    def __enter__(self):
        flags = os.O_RDWR | os.O_CREAT if self.create else os.O_RDONLY
        try:
            self.fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:
            return [], None
        except OSError as exc:
            raise ChannelError(f"Cannot open {self.path}") from exc
        fcntl.flock(self.fd, self.mode)
        data = b""
        while chunk := os.read(self.fd, 65536):
            data += chunk
        return (json.loads(data) if data.strip() else []), self._write

    def _write(self, rows) -> None:
        data = dumps(rows).encode()
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, data)
        os.ftruncate(self.fd, len(data))

    def __exit__(self, *exc_info):
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the lock


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
        # A message half-written when the stack stopped, or one of a queue nobody will read again.
        if name.endswith(PARTIAL_SUFFIX) or (name.endswith(".msg") and is_ephemeral_queue(_queue_of(name))):
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
