"""The ffmpeg the media helpers use (imageio-ffmpeg's, as the service's) and how they run it."""

from __future__ import annotations

import functools
import subprocess

_TIMEOUT = 120  # seconds; generous, every command here normally takes < 1 s


class MediaError(RuntimeError):
    """An ffmpeg command failed; ``stderr`` holds what ffmpeg printed."""

    def __init__(self, message: str, *, cmd: list[str] | None = None, stderr: str = ""):
        self.cmd = cmd
        self.stderr = stderr
        detail = f"\ncommand: {' '.join(cmd)}" if cmd else ""
        tail = "\n".join(stderr.strip().splitlines()[-25:])
        super().__init__(f"{message}{detail}\nffmpeg stderr:\n{tail}" if tail else message + detail)


class ProbeError(MediaError):
    """ffmpeg could not open the input at all (no ``Input #0`` header)."""



@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(cmd: list[str], what: str, error: type[MediaError] = MediaError) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            errors="replace", timeout=_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise error(f"{what}: ffmpeg timed out after {_TIMEOUT}s", cmd=cmd,
                    stderr=(exc.stderr or b"").decode("utf-8", "replace")
                    if isinstance(exc.stderr, bytes) else (exc.stderr or "")) from exc
    if proc.returncode != 0:
        raise error(f"{what}: ffmpeg exited with {proc.returncode}", cmd=cmd, stderr=proc.stderr)
    return proc

