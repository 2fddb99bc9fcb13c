"""The ffmpeg binary and how every command reaches it: an argument list, never a shell, and `file:` paths.

The binary is the one bundled with MoviePy's imageio-ffmpeg dependency (override with IMAGEIO_FFMPEG_EXE).
Every path is passed with the `file:` protocol so a name can never be read as an option or another protocol.
"""

from __future__ import annotations

import signal
import sys
from functools import cache
from pathlib import Path


@cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def file_url(path: Path | str) -> str:
    return f"file:{Path(path).resolve()}"


def die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL ffmpeg if the worker process that started it dies.

    ffmpeg runs in its own session (so a timeout can kill its whole group), which also means a `kill -9` of the
    worker would otherwise leave it running, orphaned, writing into a temporary directory nobody owns.
    """
    if sys.platform == "linux":
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
