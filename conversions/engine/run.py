"""Running a conversion: the cover picture, then one ffmpeg process watched for progress, cancel, timeout and the
limits on duration and size (a job past one fails, and leaves no MP3). `convert` makes one MP3; `convert_tracks` one
per chapter, in the same single ffmpeg run."""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import ffmpeg
from .command import build_command, build_split_command, cover_command, expected_duration, track_plan
from .errors import (
    UNDECODABLE_MESSAGE,
    ConversionTimeout,
    CorruptMedia,
    NoChapters,
    OutputTooLarge,
    TooLong,
    UnsupportedMedia,
)
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


@dataclass(frozen=True)
class TrackResult:
    """One chapter's MP3, as `convert_tracks` left it in its folder."""

    number: int  # from 1
    title: str
    start: float  # seconds into the source
    duration: float
    path: Path
    size: int


@dataclass(frozen=True)
class TracksResult:
    tracks: tuple[TrackResult, ...]
    log: str = field(default="", repr=False)

    @property
    def duration(self) -> float:
        return sum(track.duration for track in self.tracks)

    @property
    def size(self) -> int:
        return sum(track.size for track in self.tracks)


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


def _watch(
    command: list[str],
    *,
    expected: float | None,
    on_progress: Callable[[float], None] | None,
    timeout: float | None,
    limits: _Limits,
    outputs_size: Callable[[], int] | None = None,
) -> tuple[str, float]:
    """Run ffmpeg to the end, reporting progress and enforcing the limits and the timeout; its log and the furthest
    output time it reported (seconds). `outputs_size`, when given, is the size of all outputs together, checked with
    every progress report (ffmpeg's own `total_size` counts its first output only)."""
    logger.debug("ffmpeg command: %s", command)
    deadline = time.monotonic() + timeout if timeout else None
    reached = 0.0
    with tempfile.TemporaryFile() as stderr:
        process = ffmpeg.start(command, tied_to_parent=True, stdout=subprocess.PIPE, stderr=stderr)
        try:
            for line in process.stdout:
                key, _, value = line.decode("ascii", "replace").strip().partition("=")
                limits.check_progress(key, value)
                if key == "out_time_us" and value.isdigit():
                    reached = max(reached, int(value) / 1e6)
                    if on_progress is not None:
                        on_progress(min(100.0, reached / expected * 100) if expected else 0.0)
                if key == "progress" and outputs_size is not None:
                    limits.check_size(outputs_size())
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
    return log, reached


def _shortfall(expected: float | None, reached: float) -> bool:
    return bool(expected) and reached < expected - max(SHORTFALL_TOLERANCE_SECONDS, expected * 0.02)


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
    log, _ = _watch(command, expected=expected, on_progress=on_progress, timeout=timeout, limits=limits)
    # Past the limits, ffmpeg stops by itself (-fs, -t) and exits 0, perhaps before a progress report told.
    limits.check_size(Path(target).stat().st_size)
    duration = probe(target).duration or 0.0
    limits.check_duration(duration)
    if log.strip() and _shortfall(expected, duration):
        raise CorruptMedia(detail=log)
    if on_progress is not None:
        on_progress(100.0)
    copied = "-c:a" in command and command[command.index("-c:a") + 1] == "copy"
    return ConversionResult(duration=duration, size=Path(target).stat().st_size, copied=copied, log=log)


def convert_tracks(
    source: Path | str,
    folder: Path | str,
    *,
    options: OutputOptions,
    info: MediaInfo | None = None,
    on_progress: Callable[[float], None] | None = None,
    timeout: float | None = None,
    output: OutputFormat = MP3,
    max_duration: float | None = None,
    max_output_bytes: int | None = None,
) -> TracksResult:
    """One `output` file per chapter of `source` (command.track_plan), written into `folder` as track-001.mp3, …,
    in one ffmpeg run: the audio is decoded once. Each is tagged (title, track N/total, album, artist) and carries
    the cover when `options.cover` asks for it.

    Raises NoChapters for a file without chapters, and what `convert` raises otherwise; `max_output_bytes` limits
    the tracks together. A run that raises leaves no track behind.
    """
    info = info or probe(source)
    options.check_against(info)
    plan = track_plan(info)
    if not plan:
        raise NoChapters()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets = [folder / f"track-{track.number:03d}{output.extension}" for track in plan]
    cover_path = folder / "tracks.cover.jpg"
    limits = _Limits(max_duration, max_output_bytes)

    def outputs_size() -> int:
        return sum(target.stat().st_size for target in targets if target.exists())

    try:
        cover_image = _extract_cover(source, cover_path, info=info, options=options, output=output)
        command = build_split_command(
            source, targets, info=info, options=options, cover_image=cover_image, output=output,
            max_duration=max_duration, max_output_bytes=max_output_bytes,
        )
        log, reached = _watch(command, expected=info.duration, on_progress=on_progress, timeout=timeout,
                              limits=limits, outputs_size=outputs_size)
        limits.check_size(outputs_size())
        limits.check_duration(reached)
        if log.strip() and _shortfall(plan[-1].end, reached):
            raise CorruptMedia(detail=log)  # decoding stopped before the last chapter's end
        if on_progress is not None:
            on_progress(100.0)
        tracks = tuple(
            TrackResult(number=track.number, title=track.title, start=track.start,
                        duration=round(max(0.0, min(track.end, reached or track.end) - track.start), 3),
                        path=target, size=target.stat().st_size)
            for track, target in zip(plan, targets, strict=True)
        )
        return TracksResult(tracks=tracks, log=log)
    except BaseException:
        for target in targets:
            target.unlink(missing_ok=True)
        raise
    finally:
        cover_path.unlink(missing_ok=True)
