"""The ffmpeg binary and how every command reaches it: an argument list, never a shell, `file:` paths, allowlists of
what ffmpeg may open, and a minimal environment.

The binary is the one bundled with MoviePy's imageio-ffmpeg dependency (override with IMAGEIO_FFMPEG_EXE).
Every path is passed with the `file:` protocol so a name can never be read as an option or another protocol.
Every input gets `input_args()`: the protocols (`file` only) and the demuxers (formats.INPUT_DEMUXERS) ffmpeg may
use for it, so no playlist or manifest can make it open another file or a URL. Every process starts through
`start()`, with `child_env()` as its whole environment: ffmpeg never sees the service's secrets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from .formats import INPUT_DEMUXERS

# The only protocol ffmpeg may open inputs and outputs with. Progress goes to `pipe:1`, which is ffmpeg's own
# output (`-progress`), not an input or a muxer's output, so these allowlists do not apply to it.
PROTOCOLS = ("file",)
# All the environment ffmpeg gets (TMPDIR is added when set): no database, broker or storage credentials.
CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"
CHILD_LOCALE = "C.UTF-8"


@cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def file_url(path: Path | str) -> str:
    return f"file:{Path(path).resolve()}"


def input_args(demuxers: Iterable[str] = INPUT_DEMUXERS) -> list[str]:
    """Input options for the next `-i`: which protocols and demuxers ffmpeg may use to open it (and anything it
    would open from it)."""
    return ["-protocol_whitelist", ",".join(PROTOCOLS), "-format_whitelist", ",".join(demuxers)]


def output_args() -> list[str]:
    """Output options for the next output file: it may only be written through the allowed protocols."""
    return ["-protocol_whitelist", ",".join(PROTOCOLS)]


def child_env() -> dict[str, str]:
    """The whole environment of an ffmpeg process."""
    env = {"PATH": CHILD_PATH, "LANG": CHILD_LOCALE, "LC_ALL": CHILD_LOCALE}
    if tmpdir := os.environ.get("TMPDIR"):
        env["TMPDIR"] = tmpdir
    return env


def die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL ffmpeg if the worker process that started it dies.

    ffmpeg runs in its own session (so a timeout can kill its whole group), which also means a `kill -9` of the
    worker would otherwise leave it running, orphaned, writing into a temporary directory nobody owns.
    """
    if sys.platform == "linux":
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start(command: list[str], *, tied_to_parent: bool = False, **kwargs) -> subprocess.Popen:
    """Start an ffmpeg process: the one place the engine starts one.

    It gets `child_env()` as its environment, no standard input, and a session of its own (so `kill()` ends its
    whole group). `tied_to_parent` (worker processes only): ffmpeg dies with the process that started it
    (`die_with_parent`); not for threaded web processes, where a pre-exec hook is unsafe and the "parent" would be
    the starting thread.
    """
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, env=child_env(), start_new_session=True,
        preexec_fn=die_with_parent if tied_to_parent else None, **kwargs,
    )


def kill(process: subprocess.Popen) -> None:
    """SIGKILL a still running ffmpeg and its group, and reap it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def run(command: list[str], *, timeout: float, tied_to_parent: bool = False) -> subprocess.CompletedProcess:
    """Run ffmpeg to the end, capturing its output. Raises subprocess.TimeoutExpired (ffmpeg then killed)."""
    process = start(command, tied_to_parent=tied_to_parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        kill(process)
        for stream in (process.stdout, process.stderr):
            stream.close()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
