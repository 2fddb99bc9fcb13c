"""Small helpers for tests: polling with a deadline instead of sleeping, the stored files, a free port, stopping a
process."""

import socket
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A local TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def jobs():
    """Conversion rows with `notified_at` (when the owner was told about the current attempt), as the API shows it."""
    from conversions.models import Conversion
    from notifications.selectors import notified_at

    return Conversion.objects.annotate(notified_at=notified_at())


def stored_files() -> set[str]:
    """Every file the default storage holds for jobs: `sources/…`, `mp3/…` and `tracks/…`."""
    from django.core.files.storage import default_storage

    names = set()
    for folder in ("sources", "mp3", "tracks"):
        try:
            names |= {f"{folder}/{name}" for name in default_storage.listdir(folder)[1]}
        except FileNotFoundError:  # a folder not made yet (S3 has no folders: it lists nothing instead)
            pass
    return names


def partial_uploads() -> set[str]:
    """The partial files of unfinished resumable uploads in the local folder store: `uploads/…`."""
    from django.core.files.storage import default_storage

    try:
        return {f"uploads/{name}" for name in default_storage.listdir("uploads")[1]}
    except FileNotFoundError:  # no resumable upload made yet this session
        return set()


def wait_for(probe: Callable[[], T], *, timeout: float = 60, interval: float = 0.1, message: str = "condition") -> T:
    """Call `probe` until it returns something truthy; fail the test if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)  # the poll interval of a deadline loop, not a wait for an outcome


def terminate(process, timeout: float = 30) -> None:
    """SIGTERM a subprocess.Popen and reap it; SIGKILL it if it is still running after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
