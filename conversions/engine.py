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
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

CBR_BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
# The sample rates MPEG-1, -2 and -2.5 layer III can carry.
MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
DEFAULT_VBR_QUALITY = 2
# EBU R128 targets for `normalize`: -16 LUFS integrated, -1.5 dBTP peak (common for spoken word and music online).
LOUDNORM_FILTER = "loudnorm=I=-16:TP=-1.5:LRA=11"
# How much of the expected audio may be missing before a conversion counts as cut short by corrupt input.
SHORTFALL_TOLERANCE_SECONDS = 1.0
# Longest side of an embedded cover picture, in pixels.
COVER_MAX_SIDE = 600
TAG_MAX_LENGTH = 200
UNDECODABLE_MESSAGE = "The audio in this file uses a codec this service cannot decode."


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


class TrimOutOfRange(MediaError):
    code = "trim_out_of_range"
    message = "The trim range is outside the file's duration."


class ConversionTimeout(MediaError):
    code = "timeout"
    message = "The conversion took longer than this service allows and was stopped."


class ConversionCancelled(MediaError):
    code = "cancelled"
    message = "The conversion was cancelled."


class InvalidOption(MediaError):
    """An option that does not fit this particular file (e.g. an audio track it does not have)."""

    code = "invalid_option"

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


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
    """What the MP3 should be. Every field left as None (or False) takes the documented default.

    - `bitrate_kbps` (CBR) or `vbr_quality` (LAME -V 0..9; default 2), not both.
    - `sample_rate`: default the source's when MP3 can carry it, else the nearest lower rate it can.
    - `channels`: 1 or 2; default the source's, surround downmixed to 2.
    - `trim_start`, `trim_end`: seconds into the source.
    - `normalize`: EBU R128 loudness normalisation.
    - `title`, `artist`, `album`: ID3 tags. `cover`: a frame of the video as the cover picture.
    - `audio_track`: which audio stream (0-based among the audio streams); default the one flagged default.
    """

    bitrate_kbps: int | None = None
    vbr_quality: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    trim_start: float | None = None
    trim_end: float | None = None
    normalize: bool = False
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    cover: bool = False
    audio_track: int | None = None

    def __post_init__(self):
        if self.bitrate_kbps is not None and self.vbr_quality is not None:
            raise ValueError("Choose either bitrate_kbps or vbr_quality, not both.")
        if self.bitrate_kbps is not None and self.bitrate_kbps not in CBR_BITRATES_KBPS:
            raise ValueError(f"bitrate_kbps must be one of {', '.join(map(str, CBR_BITRATES_KBPS))}.")
        if self.vbr_quality is not None and not 0 <= self.vbr_quality <= 9:
            raise ValueError("vbr_quality must be between 0 (best) and 9 (smallest).")
        if self.sample_rate is not None and self.sample_rate not in MP3_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {', '.join(map(str, MP3_SAMPLE_RATES))}.")
        if self.channels is not None and self.channels not in (1, 2):
            raise ValueError("channels must be 1 (mono) or 2 (stereo).")
        if self.trim_start is not None and self.trim_start < 0:
            raise ValueError("trim_start must be zero or more seconds.")
        if self.trim_end is not None and self.trim_end <= (self.trim_start or 0):
            raise ValueError("trim_end must be after trim_start.")
        if self.audio_track is not None and self.audio_track < 0:
            raise ValueError("audio_track must be zero or more.")
        for tag in ("title", "artist", "album"):
            if len(getattr(self, tag) or "") > TAG_MAX_LENGTH:
                raise ValueError(f"{tag} must be at most {TAG_MAX_LENGTH} characters.")

    def as_dict(self) -> dict:
        """The options the user chose, as stored on the job (defaults are left out)."""
        # `is` comparisons: vbr_quality=0 and trim_start=0 are real choices, unlike None and False.
        return {key: value for key, value in asdict(self).items() if value is not None and value is not False}

    @classmethod
    def from_dict(cls, values: dict) -> OutputOptions:
        known = {option.name for option in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known and value is not None})

    @property
    def changes_audio(self) -> bool:
        """Whether these options need the audio re-encoded (tags and cover alone do not)."""
        return any(
            (self.bitrate_kbps, self.vbr_quality is not None, self.sample_rate, self.channels,
             self.trim_start, self.trim_end, self.normalize)
        )

    def check_against(self, info: MediaInfo) -> None:
        """Raise if the options do not fit this file: a missing audio track, or a trim beyond its end."""
        if self.audio_track is not None and self.audio_track >= len(info.audio_streams):
            count = len(info.audio_streams)
            raise InvalidOption(
                "audio_track", f"This file has {count} audio track{'s' if count != 1 else ''}: choose 0 to {count - 1}."
            )
        stream = info.audio_streams[self.audio_track] if self.audio_track is not None else info.default_audio
        if stream is not None and stream.codec == "none":
            raise UnsupportedMedia(UNDECODABLE_MESSAGE)
        if info.duration is None:
            return
        for name in ("trim_start", "trim_end"):
            value = getattr(self, name)
            # A trim end a little past the end (rounding in the container's duration) is harmless.
            limit = info.duration if name == "trim_start" else info.duration + 0.5
            if value is not None and value >= limit:
                raise TrimOutOfRange(
                    f"{name} is {value:g} s, but the file is only {info.duration:.2f} s long."
                )


@dataclass(frozen=True)
class ConversionResult:
    duration: float
    size: int
    copied: bool = False
    log: str = field(default="", repr=False)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL ffmpeg if the worker process that started it dies.

    ffmpeg runs in its own session (so a timeout can kill its whole group), which also means a `kill -9` of the
    worker would otherwise leave it running, orphaned, writing into a temporary directory nobody owns.
    """
    if sys.platform == "linux":
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


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


def _selected_stream(info: MediaInfo, options: OutputOptions) -> AudioStream:
    if options.audio_track is not None:
        options.check_against(info)
        return info.audio_streams[options.audio_track]
    stream = info.default_audio
    if stream is None:
        raise NoAudioStream()
    return stream


def _output_sample_rate(stream: AudioStream, options: OutputOptions) -> int | None:
    if options.sample_rate is not None:
        return options.sample_rate
    if stream.sample_rate is None:
        # loudnorm works at 192 kHz internally, so its output always needs an explicit rate.
        return 44100 if options.normalize else None
    if stream.sample_rate in MP3_SAMPLE_RATES:
        return stream.sample_rate
    lower = [rate for rate in MP3_SAMPLE_RATES if rate <= stream.sample_rate]
    return lower[-1] if lower else MP3_SAMPLE_RATES[0]


def _output_channels(stream: AudioStream, options: OutputOptions) -> int | None:
    if options.channels is not None:
        return options.channels
    # MP3 holds at most two channels: downmix surround sound.
    return 2 if stream.channels is not None and stream.channels > 2 else None


def expected_duration(info: MediaInfo, options: OutputOptions) -> float | None:
    """Seconds of audio the output should hold, given the trim."""
    if info.duration is None:
        return None
    end = min(options.trim_end if options.trim_end is not None else info.duration, info.duration)
    return max(0.0, end - (options.trim_start or 0.0))


def copies_stream(info: MediaInfo, options: OutputOptions) -> bool:
    """MP3 audio that no option changes is copied as it is, not decoded and re-encoded."""
    return _selected_stream(info, options).codec == "mp3" and not options.changes_audio


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def build_command(
    source: Path | str,
    target: Path | str,
    *,
    info: MediaInfo,
    options: OutputOptions,
    cover_image: Path | str | None = None,
) -> list[str]:
    """The ffmpeg argument list that writes `source`'s audio to `target` as MP3, with `cover_image` attached."""
    stream = _selected_stream(info, options)
    source_url = _file_url(source)
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"]
    # Machine-readable progress on stdout, twice a second (also how a cancel is noticed quickly).
    command += ["-progress", "pipe:1", "-stats_period", "0.5"]
    # As input options, -ss/-to seek the input: decoding starts near the trim instead of at the beginning.
    if options.trim_start is not None:
        command += ["-ss", _seconds(options.trim_start)]
    if options.trim_end is not None:
        command += ["-to", _seconds(options.trim_end)]
    # Input options: the demuxer drops video, subtitle and data packets unread instead of passing them on.
    command += ["-vn", "-sn", "-dn", "-i", source_url]
    if cover_image is not None:
        command += ["-i", _file_url(cover_image)]
    command += ["-map", f"0:a:{stream.index}"]
    if cover_image is not None:
        command += ["-map", "1:v:0", "-c:v", "copy", "-disposition:v:0", "attached_pic"]
        command += ["-metadata:s:v:0", "title=Album cover", "-metadata:s:v:0", "comment=Cover (front)"]
    command += ["-map_metadata", "-1", "-map_chapters", "-1"]
    if copies_stream(info, options):
        command += ["-c:a", "copy"]
    else:
        command += ["-c:a", "libmp3lame"]
        if options.bitrate_kbps is not None:
            command += ["-b:a", f"{options.bitrate_kbps}k"]
        else:
            command += ["-q:a", str(options.vbr_quality if options.vbr_quality is not None else DEFAULT_VBR_QUALITY)]
        if options.normalize:
            command += ["-filter:a", LOUDNORM_FILTER]
        if (rate := _output_sample_rate(stream, options)) is not None:
            command += ["-ar", str(rate)]
        if (channels := _output_channels(stream, options)) is not None:
            command += ["-ac", str(channels)]
    for tag in ("title", "artist", "album"):
        if value := getattr(options, tag):
            command += ["-metadata", f"{tag}={value}"]
    command += ["-id3v2_version", "3", "-f", "mp3", _file_url(target)]
    return command


def cover_command(source: Path | str, target: Path | str, *, info: MediaInfo, options: OutputOptions) -> list[str]:
    """The ffmpeg argument list that saves one frame, a tenth of the way into the (trimmed) clip, as a JPEG."""
    at = (options.trim_start or 0.0) + (expected_duration(info, options) or 0.0) * 0.1
    # Only ever shrink: fit within COVER_MAX_SIDE, keep the aspect ratio.
    side = COVER_MAX_SIDE
    scale = f"scale='min({side},iw)':'min({side},ih)':force_original_aspect_ratio=decrease:force_divisible_by=2"
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
        "-ss", _seconds(at), "-i", _file_url(source),
        "-map", "0:v:0", "-frames:v", "1", "-filter:v", scale, "-c:v", "mjpeg", "-q:v", "3",
        "-f", "image2", "-update", "1", _file_url(target),
    ]


def _extract_cover(source: Path | str, target: Path, *, info: MediaInfo, options: OutputOptions) -> Path | None:
    """A cover picture from the video, or None when there is no video or no frame could be decoded."""
    if not (options.cover and info.has_video):
        return None
    command = cover_command(source, target, info=info, options=options)
    completed = subprocess.run(command, capture_output=True, timeout=120, check=False)
    if completed.returncode != 0 or not target.exists() or target.stat().st_size == 0:
        logger.warning("no cover picture: %s", completed.stderr.decode("utf-8", "replace")[-500:])
        return None
    return target


def _failure(log: str) -> Exception:
    """Tell an input ffmpeg cannot decode at all from one that broke part-way."""
    lowered = log.lower()
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
) -> ConversionResult:
    """Convert `source`'s audio to an MP3 at `target`. Raises a MediaError subclass for bad input.

    `on_progress` gets a percentage about twice a second and may raise (ConversionCancelled, say) to stop the
    work. The ffmpeg process is always gone when this returns or raises, including when the calling Celery task
    is interrupted by its soft time limit.
    """
    info = info or probe(source)
    options.check_against(info)
    cover_path = Path(target).with_name(Path(target).name + ".cover.jpg")
    try:
        cover_image = _extract_cover(source, cover_path, info=info, options=options)
        command = build_command(source, target, info=info, options=options, cover_image=cover_image)
        return _run(command, target, info=info, options=options, on_progress=on_progress, timeout=timeout)
    finally:
        cover_path.unlink(missing_ok=True)


def _run(
    command: list[str],
    target: Path | str,
    *,
    info: MediaInfo,
    options: OutputOptions,
    on_progress: Callable[[float], None] | None,
    timeout: float | None,
) -> ConversionResult:
    expected = expected_duration(info, options)
    logger.debug("ffmpeg command: %s", command)
    deadline = time.monotonic() + timeout if timeout else None
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True, preexec_fn=_die_with_parent
        )
        try:
            for line in process.stdout:
                key, _, value = line.decode("ascii", "replace").strip().partition("=")
                if key == "out_time_us" and on_progress is not None and value.isdigit():
                    on_progress(min(100.0, int(value) / 1e6 / expected * 100) if expected else 0.0)
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
        raise _failure(log)
    duration = probe(target).duration or 0.0
    if expected and log.strip() and duration < expected - max(SHORTFALL_TOLERANCE_SECONDS, expected * 0.02):
        raise CorruptMedia(detail=log)
    if on_progress is not None:
        on_progress(100.0)
    copied = "-c:a" in command and command[command.index("-c:a") + 1] == "copy"
    return ConversionResult(duration=duration, size=Path(target).stat().st_size, copied=copied, log=log)
