"""The conversion engine: probe a media file and convert its audio to MP3 with ffmpeg.

This is the only module that builds ffmpeg command lines. The binary is the one bundled with MoviePy's
imageio-ffmpeg dependency (override with IMAGEIO_FFMPEG_EXE). Every command is an argument list, never a shell,
and every path is passed with the `file:` protocol so a name can never be read as an option or another protocol.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

CBR_BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
DEFAULT_VBR_QUALITY = 2
# How much of the expected audio may be missing before a conversion counts as cut short by corrupt input.
SHORTFALL_TOLERANCE_SECONDS = 1.0


class MediaError(Exception):
    """A deterministic failure of the input: retrying cannot help. `code` is one of Conversion.ErrorCode."""

    code = "internal_error"
    message = "The conversion failed unexpectedly."

    def __init__(self, message: str | None = None, *, detail: str = ""):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.detail = detail


class UnsupportedMedia(MediaError):
    code = "unsupported_media"
    message = "This file is not a video or audio file we can read. It may be damaged or in an unknown format."


class NoAudioStream(MediaError):
    code = "no_audio_stream"
    message = "This file has no audio track, so there is nothing to convert to MP3."


class CorruptMedia(MediaError):
    code = "corrupt_media"
    message = "The file is damaged: decoding its audio failed part-way through."


class ConversionTimeout(MediaError):
    code = "timeout"
    message = "The conversion took longer than this service allows and was stopped."


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


@dataclass(frozen=True)
class OutputOptions:
    """What the MP3 should be. Exactly one of CBR (`bitrate_kbps`) or VBR (`vbr_quality`, LAME -V) applies."""

    bitrate_kbps: int | None = None
    vbr_quality: int | None = None

    def __post_init__(self):
        if self.bitrate_kbps is not None and self.vbr_quality is not None:
            raise ValueError("Choose either bitrate_kbps or vbr_quality, not both.")
        if self.bitrate_kbps is not None and self.bitrate_kbps not in CBR_BITRATES_KBPS:
            raise ValueError(f"bitrate_kbps must be one of {', '.join(map(str, CBR_BITRATES_KBPS))}.")
        if self.vbr_quality is not None and not 0 <= self.vbr_quality <= 9:
            raise ValueError("vbr_quality must be between 0 (best) and 9 (smallest).")

    def as_dict(self) -> dict:
        """The options as stored on the job, with the effective VBR default filled in."""
        values = {key: value for key, value in asdict(self).items() if value is not None}
        if self.bitrate_kbps is None and self.vbr_quality is None:
            values["vbr_quality"] = DEFAULT_VBR_QUALITY
        return values

    @classmethod
    def from_dict(cls, values: dict) -> OutputOptions:
        return cls(**{key: values[key] for key in ("bitrate_kbps", "vbr_quality") if values.get(key) is not None})


@dataclass(frozen=True)
class ConversionResult:
    duration: float
    size: int
    log: str = field(default="", repr=False)


@cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _file_url(path: Path | str) -> str:
    return f"file:{Path(path).resolve()}"


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
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", _file_url(path)]
    try:
        # ffmpeg exits 1 here ("at least one output file must be specified"); what matters is what it printed.
        completed = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise UnsupportedMedia("Reading this file's headers took too long; it may be damaged.") from exc
    return parse_probe_output(completed.stderr.decode("utf-8", "replace"))


def build_command(source: Path | str, target: Path | str, *, info: MediaInfo, options: OutputOptions) -> list[str]:
    """The ffmpeg argument list that writes `source`'s audio to `target` as MP3."""
    stream = info.default_audio
    if stream is None:
        raise NoAudioStream()
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"]
    command += ["-progress", "pipe:1", "-i", _file_url(source)]
    command += ["-map", f"0:a:{stream.index}", "-vn", "-sn", "-dn", "-map_metadata", "-1", "-c:a", "libmp3lame"]
    if options.bitrate_kbps is not None:
        command += ["-b:a", f"{options.bitrate_kbps}k"]
    else:
        command += ["-q:a", str(options.vbr_quality if options.vbr_quality is not None else DEFAULT_VBR_QUALITY)]
    if stream.channels is not None and stream.channels > 2:
        command += ["-ac", "2"]  # MP3 holds at most two channels: downmix surround sound.
    command += ["-id3v2_version", "3", "-f", "mp3", _file_url(target)]
    return command


def convert(
    source: Path | str,
    target: Path | str,
    *,
    options: OutputOptions,
    info: MediaInfo | None = None,
    on_progress: Callable[[float], None] | None = None,
    timeout: float | None = None,
) -> ConversionResult:
    """Convert `source`'s audio to an MP3 at `target`. Raises a MediaError subclass for bad input.

    The ffmpeg process is always gone when this returns or raises, including when the calling Celery task is
    interrupted by its soft time limit.
    """
    info = info or probe(source)
    command = build_command(source, target, info=info, options=options)
    logger.debug("ffmpeg command: %s", command)
    deadline = time.monotonic() + timeout if timeout else None
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
        try:
            for line in process.stdout:
                key, _, value = line.decode("ascii", "replace").strip().partition("=")
                if key == "out_time_us" and on_progress is not None and info.duration and value.isdigit():
                    on_progress(min(100.0, int(value) / 1e6 / info.duration * 100))
                if deadline is not None and time.monotonic() > deadline:
                    raise ConversionTimeout()
            returncode = process.wait()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            process.stdout.close()
        stderr.seek(0)
        log = stderr.read().decode("utf-8", "replace")[-20000:]
    if returncode != 0:
        raise CorruptMedia(detail=log)
    result_info = probe(target)
    duration = result_info.duration or 0.0
    expected = info.duration
    if expected and log.strip() and duration < expected - max(SHORTFALL_TOLERANCE_SECONDS, expected * 0.02):
        raise CorruptMedia(detail=log)
    if on_progress is not None:
        on_progress(100.0)
    return ConversionResult(duration=duration, size=Path(target).stat().st_size, log=log)
