"""Probing: what streams a media file has, and how long it is, read from what `ffmpeg -i` prints.

With a duration limit, the probe also refuses what lasts too long: by the headers when they give a duration, else
(none given, or only ffmpeg's estimate from the bitrate) by measuring it from the audio packets' timestamps, read
without decoding and no further than just past the limit. A small file that decodes to hours is refused so.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from . import ffmpeg
from .errors import TooLong, UnsupportedMedia
from .ffmpeg import ffmpeg_exe, file_url, input_args

# How far past the limit the measurement reads, so "longer than the limit" is seen, not "exactly at it".
MEASURE_PAST_LIMIT_SECONDS = 1.0
TOO_SLOW_MESSAGE = "Reading this file's headers took too long; it may be damaged."
MEASURE_TOO_SLOW_MESSAGE = "Measuring how long this file lasts took too long; it may be damaged."


@dataclass(frozen=True)
class AudioStream:
    index: int  # the stream's index among the input's audio streams (ffmpeg's 0:a:N)
    codec: str
    sample_rate: int | None
    channels: int | None
    default: bool


@dataclass(frozen=True)
class Chapter:
    """A chapter as the container lists it: seconds into the file, and its title tag (None when it has none)."""

    start: float
    end: float
    title: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class MediaInfo:
    format_name: str
    duration: float | None
    audio_streams: tuple[AudioStream, ...]
    has_video: bool
    duration_estimated: bool = False  # ffmpeg guessed the duration from the bitrate (no header gives it)
    chapters: tuple[Chapter, ...] = ()

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_streams)

    @property
    def default_audio(self) -> AudioStream | None:
        if not self.audio_streams:
            return None
        return next((stream for stream in self.audio_streams if stream.default), self.audio_streams[0])


_DURATION_RE = re.compile(r"^\s*Duration: (?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)", re.MULTILINE)
_INPUT_RE = re.compile(r"^Input #0, (?P<format>[^ ]+), from ", re.MULTILINE)
_STREAM_RE = re.compile(r"^\s*Stream #0:\d+(?:\[0x[0-9a-f]+\])?(?:\([^)]*\))?: (?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<codec>[\w-]+)(?P<rest>.*)$", re.MULTILINE)
_CHAPTER_RE = re.compile(
    r"^(?P<indent> *)Chapter #0:\d+: start (?P<start>-?[\d.]+), end (?P<end>-?[\d.]+)\s*$", re.MULTILINE
)
_METADATA_LINE_RE = re.compile(r"^ *(?P<key>[^:]+?) *: ?(?P<value>.*)$")
_RATE_RE = re.compile(r"(\d+) Hz")
_ESTIMATED = "Estimating duration from bitrate"
_OUT_TIME_RE = re.compile(rb"^out_time_us=(\d+)$", re.MULTILINE)
_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "4.0": 4, "4.1": 5, "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}


def _channels(details: str) -> int | None:
    match = re.search(r"(\d+) channels", details)
    if match:
        return int(match.group(1))
    for part in details.split(","):
        layout = part.strip().split("(")[0]
        if layout in _LAYOUT_CHANNELS:
            return _LAYOUT_CHANNELS[layout]
    return None


def _is_still_or_text(format_name: str) -> bool:
    return format_name in ("image2", "tty", "webp_pipe") or format_name.endswith("_pipe")


def parse_chapters(stderr: str) -> tuple[Chapter, ...]:
    """The chapters `ffmpeg -i` lists (its "Chapters:" block, in the container's order), with their title tags.

    Chapters that last no time at all (end at or before their start) are left out: there is no audio to split off.
    """
    chapters = []
    lines = stderr.splitlines()
    for number, line in enumerate(lines):
        match = _CHAPTER_RE.match(line)
        if match is None:
            continue
        start, end = float(match["start"]), float(match["end"])
        if end <= start:
            continue
        chapters.append(Chapter(start=max(0.0, start), end=end, title=_chapter_title(lines, number, match["indent"])))
    return tuple(chapters)


def _chapter_title(lines: list[str], chapter_line: int, indent: str) -> str | None:
    """The `title` in the chapter's "Metadata:" block, which is indented further than the chapter's own line."""
    for line in lines[chapter_line + 1:]:
        if not line.startswith(indent + " ") or _CHAPTER_RE.match(line):
            return None
        if (match := _METADATA_LINE_RE.match(line)) and match["key"].lower() == "title":
            return match["value"].strip() or None
    return None


def parse_probe_output(stderr: str) -> MediaInfo:
    """Read what `ffmpeg -i` prints about its input (this build has no ffprobe)."""
    header = _INPUT_RE.search(stderr)
    if header is None:
        raise UnsupportedMedia(detail=stderr[-4000:])
    duration = None
    if match := _DURATION_RE.search(stderr):
        duration = int(match["h"]) * 3600 + int(match["m"]) * 60 + float(match["s"])
    audio, has_video = [], False
    for stream in _STREAM_RE.finditer(stderr):
        rest = stream["rest"]
        if stream["kind"] == "Audio":
            rate = _RATE_RE.search(rest)
            audio.append(
                AudioStream(
                    index=len(audio),
                    codec=stream["codec"],
                    sample_rate=int(rate.group(1)) if rate else None,
                    channels=_channels(rest),
                    default="(default)" in rest,
                )
            )
        elif stream["kind"] == "Video" and "(attached pic)" not in rest:
            has_video = True
    if not audio and (not has_video or _is_still_or_text(header["format"])):
        # ffmpeg opens images (png_pipe, image2) and even long text files (tty, as ANSI art) as "video".
        raise UnsupportedMedia(detail=stderr[-4000:])
    return MediaInfo(
        format_name=header["format"], duration=duration, audio_streams=tuple(audio), has_video=has_video,
        duration_estimated=duration is not None and _ESTIMATED in stderr, chapters=parse_chapters(stderr),
    )


def probe(path: Path | str, *, timeout: float = 30, max_duration: float | None = None) -> MediaInfo:
    """Streams and duration of a media file. Raises UnsupportedMedia for anything ffmpeg cannot open (or may not:
    only the demuxers of formats.INPUT_DEMUXERS, only local files), and TooLong for audio past `max_duration`
    seconds. All of it within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", *input_args(), "-i", file_url(path)]
    try:
        # ffmpeg exits 1 here ("at least one output file must be specified"); what matters is what it printed.
        completed = ffmpeg.run(command, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise UnsupportedMedia(TOO_SLOW_MESSAGE) from exc
    info = parse_probe_output(completed.stderr.decode("utf-8", "replace"))
    if max_duration is None:
        return info
    if info.duration is not None and info.duration > 0 and not info.duration_estimated:
        if info.duration > max_duration:
            raise TooLong(max_duration)
        return info
    try:
        measured = measure_duration(path, limit=max_duration, timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as exc:
        raise UnsupportedMedia(MEASURE_TOO_SLOW_MESSAGE) from exc
    if measured > max_duration:
        raise TooLong(max_duration, detail=f"measured at least {measured:.1f} s of audio")
    return replace(info, duration=measured, duration_estimated=False) if measured > 0 else info


def measure_duration(path: Path | str, *, limit: float, timeout: float) -> float:
    """Seconds of audio in a file, from its audio packets (copied to nowhere, never decoded), counting no further
    than just past `limit`. Raises subprocess.TimeoutExpired past `timeout`."""
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-progress", "pipe:1", *input_args(), "-vn", "-sn", "-dn", "-i", file_url(path),
        "-map", "0:a?", "-c", "copy", "-t", f"{limit + MEASURE_PAST_LIMIT_SECONDS:.3f}", "-f", "null", "-",
    ]
    completed = ffmpeg.run(command, timeout=timeout)
    # What was read, even when ffmpeg stopped at damage part-way: the conversion would get as far.
    reached = [int(value) for value in _OUT_TIME_RE.findall(completed.stdout)]
    return max(reached, default=0) / 1e6
