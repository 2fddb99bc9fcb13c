"""Probing: what streams a media file has, and how long it is, read from what `ffmpeg -i` prints."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import UnsupportedMedia
from .ffmpeg import ffmpeg_exe, file_url


@dataclass(frozen=True)
class AudioStream:
    index: int  # the stream's index among the input's audio streams (ffmpeg's 0:a:N)
    codec: str
    sample_rate: int | None
    channels: int | None
    default: bool


@dataclass(frozen=True)
class MediaInfo:
    format_name: str
    duration: float | None
    audio_streams: tuple[AudioStream, ...]
    has_video: bool

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
_RATE_RE = re.compile(r"(\d+) Hz")
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
    return MediaInfo(format_name=header["format"], duration=duration, audio_streams=tuple(audio), has_video=has_video)


def probe(path: Path | str, *, timeout: float = 30) -> MediaInfo:
    """Streams and duration of a media file. Raises UnsupportedMedia for anything ffmpeg cannot open."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", file_url(path)]
    try:
        # ffmpeg exits 1 here ("at least one output file must be specified"); what matters is what it printed.
        completed = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise UnsupportedMedia("Reading this file's headers took too long; it may be damaged.") from exc
    return parse_probe_output(completed.stderr.decode("utf-8", "replace"))
