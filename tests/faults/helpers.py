"""What fault tests look at: processes in /proc, a job's stored files and emails, the broker's state."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from conversions.models import Conversion
from tests.fixtures.workers import WorkerProcess
from tests.utils import jobs, wait_for


# --- Processes ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgrp: int
    state: str
    args: tuple[str, ...]


def proc(pid: int) -> Proc | None:
    """The process `pid` as /proc shows it, or None once it is gone. A zombie counts as gone: it runs nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (2nd field) is in parentheses and may hold spaces: split after its closing one.
    state, ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
    if state in ("Z", "X"):
        return None
    args = tuple(arg.decode(errors="replace") for arg in cmdline.split(b"\0") if arg)
    return Proc(pid=pid, ppid=int(ppid), pgrp=int(pgrp), state=state, args=args)


def processes() -> list[Proc]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (process := proc(int(entry.name))) is not None:
            found.append(process)
    return found


def alive(pid: int) -> bool:
    return proc(pid) is not None


def children(pid: int) -> list[Proc]:
    return [process for process in processes() if process.ppid == pid]


def ffmpeg_conversions(marker: str) -> list[Proc]:
    """Running ffmpeg conversions (they report with -progress) whose command line mentions `marker`."""
    return [
        process for process in processes()
        if "-progress" in process.args and any(marker in arg for arg in process.args)
    ]


def conversion_workdir(ffmpeg: Proc) -> Path:
    """The temporary work dir of a conversion: the folder its ffmpeg writes into (a source in the local folder is read
    in place, so the input may be elsewhere)."""
    output = Path(next(arg for arg in reversed(ffmpeg.args) if arg.startswith("file:")).removeprefix("file:"))
    return next(folder for folder in output.parents if folder.name.startswith("mp3converter-"))


def wait_ffmpeg(worker: WorkerProcess, *, timeout: float = 30) -> Proc:
    """The one conversion ffmpeg that `worker` (which has its own TMPDIR) is running."""
    [ffmpeg] = wait_for(lambda: ffmpeg_conversions(f"{worker.tmpdir}/mp3converter-"), timeout=timeout, interval=0.02,
                        message=f"an ffmpeg conversion of the worker with TMPDIR {worker.tmpdir}")
    return ffmpeg


def kill_worker_group(worker: WorkerProcess) -> None:
    """A pod kill: SIGKILL the worker's main process and its pool children at once (the worker leads its group).

    ffmpeg runs in a session of its own, so it is not hit here: it must die by itself (PR_SET_PDEATHSIG). Returns
    once the killed processes are gone for good, reaped and not zombies any more, as after a pod kill (the orphaned
    pool processes are reaped by init, which can take a moment here).
    """
    assert worker.process.poll() is None, f"the worker had already stopped:\n{worker.log()[-3000:]}"
    pgid = worker.process.pid
    assert os.getpgid(pgid) == pgid, "start the worker with start_new_session=True to kill it as a group"
    members = [process.pid for process in processes() if process.pgrp == pgid]
    os.killpg(pgid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    wait_for(lambda: not [pid for pid in members if Path(f"/proc/{pid}").exists()], timeout=30, interval=0.02,
             message="every process of the killed worker to be gone and reaped")


def workdirs(tmpdir: Path) -> list[Path]:
    """Conversion work dirs (`mp3converter-<pid>-*`) in a worker's TMPDIR."""
    return sorted(tmpdir.glob("mp3converter-*"))


# --- A job's results ---------------------------------------------------------------------------------------------
def upload_job(client, path, **fields) -> str:
    """Upload through the native API; the new job's id."""
    from tests.conversions.api.helpers import upload

    response = upload(client, path, **fields)
    assert response.status_code == 202, response.content
    return response.json()["id"]


def stored_mp3s(job_id) -> list[str]:
    """Every MP3 in storage that belongs to the job, whatever its suffix (`<id>-<attempt>.mp3`, `<id>-1_abc.mp3`)."""
    if not default_storage.exists("mp3"):
        return []
    return sorted(f"mp3/{name}" for name in default_storage.listdir("mp3")[1] if name.startswith(str(job_id)))


def emails_about(mailbox, job_id) -> list:
    """Emails that name this job (done or failed)."""
    with mailbox.lock:
        messages = list(mailbox.messages)
    return [message for message in messages if str(job_id) in message.get_payload(decode=True).decode()]


def row(job_id) -> Conversion:
    return jobs().get(pk=job_id)


def assert_finished_exactly_once(job_id, owner_email: str, mailbox) -> Conversion:
    """The job is done and notified, has exactly one MP3 in storage (the one the row points at, complete), and its
    owner got exactly one email about it."""
    conversion = row(job_id)
    assert conversion.status == Conversion.Status.DONE, (conversion.status, conversion.error_code,
                                                         conversion.error_message, conversion.error_detail)
    assert stored_mp3s(job_id) == [conversion.mp3.name]
    assert default_storage.size(conversion.mp3.name) == conversion.mp3_size > 0
    assert conversion.notified_at is not None
    about = emails_about(mailbox, job_id)
    assert len(about) == 1, [message["Subject"] for message in about]
    assert about[0]["To"] == owner_email
    assert about[0]["Subject"] == "MP3 Download"
    return conversion


def wait_done_and_notified(job_id, *, timeout: float = 90) -> Conversion:
    def finished():
        conversion = row(job_id)
        assert conversion.status in ("queued", "processing", "done"), (conversion.status, conversion.error_code,
                                                                       conversion.error_message,
                                                                       conversion.error_detail)
        return conversion if conversion.status == "done" and conversion.notified_at else None

    return wait_for(finished, timeout=timeout, interval=0.1, message=f"job {job_id} to be done and notified")


# --- RabbitMQ ----------------------------------------------------------------------------------------------------
def rabbitmqctl(*args: str, timeout: float = 60) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=timeout)


def broker_reachable() -> bool:
    from mp3converter.celery import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False


def queue_depth(queue: str = "convert") -> tuple[int, int]:
    """(ready, unacknowledged) messages of a queue on the test broker, as RabbitMQ counts them right now (the
    management API's figures lag by up to its statistics interval)."""
    from urllib.parse import unquote, urlsplit

    vhost = unquote(urlsplit(settings.CELERY_BROKER_URL).path.lstrip("/")) or "/"
    completed = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", vhost, "--quiet", "--no-table-headers",
         "name", "messages_ready", "messages_unacknowledged"],
        check=True, capture_output=True, text=True, timeout=30,
    )
    for line in completed.stdout.splitlines():
        name, ready, unacked = line.split()
        if name == queue:
            return int(ready), int(unacked)
    raise AssertionError(f"no queue {queue} in vhost {vhost}:\n{completed.stdout}")
