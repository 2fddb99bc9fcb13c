"""Conversions' temporary work folders: one per conversion, named after its process, and the sweeper for those a
killed process left behind.

Every conversion works in `mp3converter-<pid>-*` under the temp dir and removes it when done; only a process that
died mid-conversion leaves one behind, and the next pool process on the machine removes it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile

logger = logging.getLogger(__name__)

WORKDIR_PREFIX = "mp3converter-"
_WORKDIR_RE = re.compile(rf"^{WORKDIR_PREFIX}(\d+)-")


def conversion_workdir() -> tempfile.TemporaryDirectory:
    """A new work folder for one conversion in this process, removed when the `with` block ends."""
    return tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")


def _process_alive(pid: int) -> bool:
    """A killed process can linger as a zombie until reaped: that counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def workdirs_sweep(*, directory: str | None = None) -> list[str]:
    """Remove the work folders of conversions whose process is gone (killed, say); returns their names.

    A process whose pid is alive keeps its folder.
    """
    directory = directory or tempfile.gettempdir()
    removed = []
    for entry in os.scandir(directory):
        match = _WORKDIR_RE.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False):
            continue
        if _process_alive(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.name)
    if removed:
        logger.warning("removed %d temporary folder(s) left by killed conversions: %s", len(removed), removed)
    return removed
