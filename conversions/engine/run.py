"""Running a conversion: the cover picture, then one ffmpeg process watched for progress, cancel, timeout and the
limits on duration and size (a job past one fails, and leaves no MP3)."""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import ffmpeg
from .command import build_command, cover_command, expected_duration
from .errors import UNDECODABLE_MESSAGE, ConversionTimeout, CorruptMedia, OutputTooLarge, TooLong, UnsupportedMedia
from .formats import MP3, OutputFormat
from .options import OutputOptions
from .probe import MediaInfo, probe

logger = logging.getLogger(__name__)

# How much of the expected audio may be missing before a conversion counts as cut short by corrupt input.
SHORTFALL_TOLERANCE_SECONDS = 1.0
# How much longer than the duration limit an output may be before it counts as past it (an MP3 holds a little more
# than its source: the encoder's priming and padding). The output is cut further on (DURATION_CAP_MARGIN_SECONDS).
LIMIT_TOLERANCE_SECONDS = 0.5
COVER_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class ConversionResult:
    duration: float
    size: int
    copied: bool = False
    log: str = field(default="", repr=False)


def _extract_cover(
    source: Path | str, target: Path, *, info: MediaInfo, options: OutputOptions, output: OutputFormat
) -> Path | None:
    """A cover picture from the video, or None when there is no video or no frame could be decoded."""
    if not (options.cover and output.cover and info.has_video):
        return None
    command = cover_command(source, target, info=info, options=options)
    try:
        completed = ffmpeg.run(command, timeout=COVER_TIMEOUT_SECONDS, tied_to_parent=True)
    except subprocess.TimeoutExpired:
        logger.warning("no cover picture: ffmpeg took longer than %d s", COVER_TIMEOUT_SECONDS)
        return None
    if completed.returncode != 0 or not target.exists() or target.stat().st_size == 0:
        logger.warning("no cover picture: %s", completed.stderr.decode("utf-8", "replace")[-500:])
        return None
    return target


def _failure(log: str) -> Exception:
    """Tell an input ffmpeg cannot decode at all from one that broke part-way."""
    lowered = log.lower()
    if "not on whitelist" in lowered:  # a demuxer or protocol the allowlists refuse: not media this service reads
        return UnsupportedMedia(detail=log)
    # Checked first: ffmpeg 7+ says "Decoding requested, but no decoder found for: none" and then, as a
    # consequence, "Error opening output file ...", which must not be mistaken for a write failure.
    if (
        "no decoder found" in lowered
        or "decoder" in lowered and "not found" in lowered
        or "unsupported codec" in lowered
    ):
        return UnsupportedMedia(UNDECODABLE_MESSAGE, detail=log)
    if "error opening output" in lowered or "no space left" in lowered:
        return OSError(f"ffmpeg could not write its output: {log[-500:]}")  # the machine's fault: worth a retry
    return CorruptMedia(detail=log)


def convert(
    source: Path | str,
    target: Path | str,
    *,
    options: OutputOptions,
    info: MediaInfo | None = None,
    on_progress: Callable[[float], None] | None = None,
    timeout: float | None = None,
    output: OutputFormat = MP3,
    max_duration: float | None = None,
    max_output_bytes: int | None = None,
) -> ConversionResult:
    """Convert `source`'s audio to `output` (MP3) at `target`. Raises a MediaError subclass for bad input.

    `on_progress` gets a percentage about twice a second and may raise (ConversionCancelled, say) to stop the
    work. The ffmpeg process is always gone when this returns or raises, including when the calling Celery task
    is interrupted by its soft time limit. Audio that turns out longer than `max_duration` seconds (whatever the
    headers said) raises TooLong, an output reaching `max_output_bytes` OutputTooLarge; a conversion that raises
    leaves no `target`.
    """
    info = info or probe(source)
    options.check_against(info)
    cover_path = Path(target).with_name(Path(target).name + ".cover.jpg")
    limits = _Limits(max_duration, max_output_bytes)
    try:
        cover_image = _extract_cover(source, cover_path, info=info, options=options, output=output)
        command = build_command(
            source, target, info=info, options=options, cover_image=cover_image, output=output,
            max_duration=max_duration, max_output_bytes=max_output_bytes,
        )
        return _run(command, target, info=info, options=options, on_progress=on_progress, timeout=timeout,
                    limits=limits)
    except BaseException:
        Path(target).unlink(missing_ok=True)
        raise
    finally:
        cover_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Limits:
    max_duration: float | None
    max_output_bytes: int | None

    def check_duration(self, seconds: float) -> None:
        if self.max_duration is not None and seconds > self.max_duration + LIMIT_TOLERANCE_SECONDS:
            raise TooLong(self.max_duration, detail=f"the output reached {seconds:.1f} s")

    def check_size(self, size: int) -> None:
        if self.max_output_bytes is not None and size >= self.max_output_bytes:
            raise OutputTooLarge(self.max_output_bytes, detail=f"the output reached {size} bytes")

    def check_progress(self, key: str, value: str) -> None:
        if not value.isdigit():
            return
        if key == "out_time_us":
            self.check_duration(int(value) / 1e6)
        elif key == "total_size":
            self.check_size(int(value))


def _run(
    command: list[str],
    target: Path | str,
    *,
    info: MediaInfo,
    options: OutputOptions,
    on_progress: Callable[[float], None] | None,
    timeout: float | None,
    limits: _Limits,
) -> ConversionResult:
    expected = expected_duration(info, options)
    logger.debug("ffmpeg command: %s", command)
    deadline = time.monotonic() + timeout if timeout else None
    with tempfile.TemporaryFile() as stderr:
        process = ffmpeg.start(command, tied_to_parent=True, stdout=subprocess.PIPE, stderr=stderr)
        try:
            for line in process.stdout:
                key, _, value = line.decode("ascii", "replace").strip().partition("=")
                limits.check_progress(key, value)
                if key == "out_time_us" and on_progress is not None and value.isdigit():
                    on_progress(min(100.0, int(value) / 1e6 / expected * 100) if expected else 0.0)
                if deadline is not None and time.monotonic() > deadline:
                    raise ConversionTimeout()
            returncode = process.wait()
        finally:
            ffmpeg.kill(process)
            process.stdout.close()
        stderr.seek(0)
        log = stderr.read().decode("utf-8", "replace")[-20000:]
    if returncode != 0:
        raise _failure(log)
    # Past the limits, ffmpeg stops by itself (-fs, -t) and exits 0, perhaps before a progress report told.
    limits.check_size(Path(target).stat().st_size)
    duration = probe(target).duration or 0.0
    limits.check_duration(duration)
    if expected and log.strip() and duration < expected - max(SHORTFALL_TOLERANCE_SECONDS, expected * 0.02):
        raise CorruptMedia(detail=log)
    if on_progress is not None:
        on_progress(100.0)
    copied = "-c:a" in command and command[command.index("-c:a") + 1] == "copy"
    return ConversionResult(duration=duration, size=Path(target).stat().st_size, copied=copied, log=log)
