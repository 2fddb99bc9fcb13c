"""Small helpers for tests: polling with a deadline instead of sleeping."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def stored_files() -> set[str]:
    """Every file the default storage holds for jobs: `sources/…` and `mp3/…`."""
    from django.core.files.storage import default_storage

    names = set()
    for folder in ("sources", "mp3"):
        if default_storage.exists(folder):
            names |= {f"{folder}/{name}" for name in default_storage.listdir(folder)[1]}
    return names


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
