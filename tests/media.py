"""Generate small media files for the test suite with the bundled ffmpeg.

Nothing here is checked in: every file is synthesised on demand from ffmpeg's
``lavfi`` sources (``testsrc2`` for video, ``sine`` for audio) with the ffmpeg
binary shipped by ``imageio-ffmpeg``.  Files are tiny (160x120 @ 10 fps) and
each one takes a few hundredths of a second to make.

Public API
----------
``SPECS``            name -> :class:`MediaSpec` (the table of everything we can make)
``make_media``       generate one spec into a directory (cached per name+duration)
``ffmpeg_exe``       path of the ffmpeg binary
``probe_output``     parse ``ffmpeg -i FILE`` (there is no ffprobe) into a dict
``decoded_duration`` decode a stream to ``null`` and return how long it really is

Probe contract
--------------
:func:`probe_output` **raises** :class:`ProbeError` when ffmpeg cannot open the
file at all (no ``Input #0`` header in its output: empty files, random bytes,
an mp4 whose ``moov`` atom is missing, short text files ...).  When ffmpeg can
open the file it returns a dict, whose ``audio``/``video`` lists may be empty.
So "is this something we can convert?" is ``probe_output(p)["audio"] != []``
guarded by ``except ProbeError``.

``MediaSpec.is_media`` means exactly "probe_output() succeeds"; ``has_audio``
means "probe_output() lists at least one audio stream".  Hence the PNG (and the
long text file, see below) are ``is_media=True, has_audio=False``.
"""

from __future__ import annotations

import functools
import os
import random
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = [
    "AudioTrack",
    "MediaError",
    "MediaSpec",
    "ProbeError",
    "SPECS",
    "decoded_duration",
    "ffmpeg_exe",
    "make_media",
    "probe_output",
]

DEFAULT_DURATION = 2.0
VIDEO_SIZE = "160x120"
VIDEO_RATE = 10
_TIMEOUT = 120  # seconds; generous, every command here normally takes < 1 s

# Demuxer names exactly as ``ffmpeg -i`` prints them after "Input #0, ".
MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
MATROSKA = "matroska,webm"


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


# --------------------------------------------------------------------------
# The spec table
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioTrack:
    """One audio stream a generated file should contain (in stream order)."""

    codec: str  # codec name as ffmpeg reports it: "aac", "mp3", "opus", ...
    sample_rate: int
    channels: int
    frequency: float = 440.0  # sine tone in Hz
    default: bool | None = None  # force the "default" disposition on/off; None = muxer's choice


@dataclass(frozen=True)
class MediaSpec:
    name: str  # stable key, e.g. "mp4_aac"
    filename: str  # basename of the generated file, e.g. "clip.mp4"
    # Seconds of audio a file made with the default duration (2.0) contains;
    # 0.0 when there is no audio.  Use expected_audio_duration() for others.
    duration: float
    has_audio: bool  # probe_output() lists at least one audio stream
    is_media: bool  # probe_output() succeeds (ffmpeg can open the file)
    kind: str = "ffmpeg"  # key into _BUILDERS: ffmpeg | text | random | empty
    format: str | None = None  # demuxer name ffmpeg reports, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    video_codec: str | None = None  # "h264", "vp9", "mpeg4", "png" ... (as ffmpeg reports)
    audio: tuple[AudioTrack, ...] = ()
    muxer: str | None = None  # ffmpeg -f value used to write it
    tags: tuple[tuple[str, str], ...] = ()  # container metadata written (-metadata k=v)
    extra_args: tuple[str, ...] = ()  # extra ffmpeg output options
    truncate: float | None = None  # keep only this fraction of the bytes
    note: str = ""

    @property
    def title(self) -> str | None:
        return dict(self.tags).get("title")

    @property
    def truncated(self) -> bool:
        return self.truncate is not None

    def expected_audio_duration(self, requested: float = DEFAULT_DURATION) -> float:
        """Audio seconds a file generated with ``duration=requested`` should decode to.

        Truncated files report what the container *claims*; they decode to less.
        """
        return requested if self.has_audio else 0.0


# Encoder options per codec.  "{s}" becomes the output stream specifier
# ("v:0", "a:1", ...), so the same row serves multi-track files.
_VIDEO_ENCODERS: dict[str, tuple[str, ...]] = {
    "h264": ("-c:{s}", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
    "vp9": (
        "-c:{s}", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
        "-b:{s}", "150k", "-pix_fmt", "yuv420p",
    ),
    "mpeg4": ("-c:{s}", "mpeg4", "-q:{s}", "5", "-pix_fmt", "yuv420p"),
    "png": ("-c:{s}", "png", "-frames:{s}", "1"),
}
_AUDIO_ENCODERS: dict[str, tuple[str, ...]] = {
    "aac": ("-c:{s}", "aac", "-b:{s}", "64k"),
    "mp3": ("-c:{s}", "libmp3lame", "-b:{s}", "64k"),
    "opus": ("-c:{s}", "libopus", "-b:{s}", "48k"),
    "vorbis": ("-c:{s}", "libvorbis", "-q:{s}", "1"),
    "ac3": ("-c:{s}", "ac3", "-b:{s}", "192k"),
    "flac": ("-c:{s}", "flac"),
    "pcm_s16le": ("-c:{s}", "pcm_s16le"),
}


def _t(codec: str, rate: int = 44100, ch: int = 2, **kw) -> tuple[AudioTrack, ...]:
    return (AudioTrack(codec, rate, ch, **kw),)


def _av(name, filename, fmt, muxer, video, audio=(), **kw) -> MediaSpec:
    return MediaSpec(
        name=name, filename=filename,
        duration=DEFAULT_DURATION if audio else 0.0,
        has_audio=bool(audio), is_media=True,
        format=fmt, muxer=muxer, video_codec=video, audio=tuple(audio), **kw,
    )


_TONE_TITLE = "Test Tone 440"
_CLIP_TITLE = "Test Clip"

_SPEC_LIST: tuple[MediaSpec, ...] = (
    # ---- video containers -------------------------------------------------
    _av("mp4_aac", "clip.mp4", MP4_FAMILY, "mp4", "h264", _t("aac"),
        tags=(("title", _CLIP_TITLE),)),
    _av("mp4_noaudio", "silent.mp4", MP4_FAMILY, "mp4", "h264"),
    _av("mov_aac", "clip.mov", MP4_FAMILY, "mov", "h264", _t("aac")),
    _av("mkv_opus", "clip.mkv", MATROSKA, "matroska", "h264", _t("opus", 48000)),
    _av("webm_vorbis", "clip.webm", MATROSKA, "webm", "vp9", _t("vorbis")),
    _av("avi_mp3", "clip.avi", "avi", "avi", "mpeg4", _t("mp3")),
    _av("flv_aac", "clip.flv", "flv", "flv", "h264", _t("aac")),
    _av("ts_aac", "clip.ts", "mpegts", "mpegts", "h264", _t("aac"),
        note="mpegts starts at 1.4 s; ADTS AAC keeps its 1024-sample priming"),
    _av("3gp_aac", "clip.3gp", MP4_FAMILY, "3gp", "h264", _t("aac", 22050, 1)),
    _av("mkv_ac3", "surround.mkv", MATROSKA, "matroska", "h264", _t("ac3", 48000, 6),
        note="6 channels; ffmpeg reports the layout as 5.1(side)"),
    _av("mkv_flac", "lossless.mkv", MATROSKA, "matroska", "h264", _t("flac")),
    _av("mkv_pcm", "pcm.mkv", MATROSKA, "matroska", "h264", _t("pcm_s16le")),
    _av("mkv_two_tracks", "two_tracks.mkv", MATROSKA, "matroska", "h264",
        (AudioTrack("aac", 44100, 2, 440.0, default=False),
         AudioTrack("aac", 44100, 1, 880.0, default=True)),
        note="a:0 440 Hz stereo (not default), a:1 880 Hz mono flagged default"),
    # ---- audio only -------------------------------------------------------
    _av("m4a_aac", "tone.m4a", MP4_FAMILY, "ipod", None, _t("aac")),
    _av("mp3", "tone.mp3", "mp3", "mp3", None, _t("mp3"),
        tags=(("title", _TONE_TITLE),), extra_args=("-id3v2_version", "3")),
    _av("ogg_vorbis", "tone.ogg", "ogg", "ogg", None, _t("vorbis")),
    _av("oga_vorbis", "tone.oga", "ogg", "oga", None, _t("vorbis")),
    _av("opus", "tone.opus", "ogg", "opus", None, _t("opus", 48000)),
    _av("wav", "tone.wav", "wav", "wav", None, _t("pcm_s16le")),
    _av("flac", "tone.flac", "flac", "flac", None, _t("flac")),
    # ---- images / damaged / not media ------------------------------------
    MediaSpec("png", "image.png", 0.0, has_audio=False, is_media=True,
              format="png_pipe", muxer="image2pipe", video_codec="png",
              note="a still image: ffmpeg opens it (one png video stream) but it has no audio"),
    MediaSpec("truncated_mp4", "truncated.mp4", 0.0, has_audio=False, is_media=False,
              muxer="mp4", video_codec="h264", audio=_t("aac"), truncate=0.40,
              note="mp4_aac cut to 40% of its bytes; moov is at the end so ffmpeg "
                   "says 'moov atom not found' and cannot open it"),
    MediaSpec("truncated_faststart_mp4", "truncated_faststart.mp4", DEFAULT_DURATION,
              has_audio=True, is_media=True, format=MP4_FAMILY,
              muxer="mp4", video_codec="h264", audio=_t("aac"), truncate=0.50,
              extra_args=("-movflags", "+faststart"),
              note="moov first, cut to 50% of its bytes: opens and claims the full "
                   "duration, decoding stops part-way ('partial file')"),
    MediaSpec("text", "notes.txt", 0.0, has_audio=False, is_media=False, kind="text",
              note="short plain text (< ~400 bytes): ffmpeg cannot open it"),
    MediaSpec("text_large", "long_notes.txt", 0.0, has_audio=False, is_media=True,
              kind="text", format="tty", video_codec="ansi",
              note="~2 KiB plain text: ffmpeg's tty demuxer opens any .txt over "
                   "~400-450 bytes as an 'ansi' video stream (no audio)"),
    MediaSpec("random_bytes_mp4", "random.mp4", 0.0, has_audio=False, is_media=False,
              kind="random", note="64 KiB of seeded pseudo-random bytes"),
    MediaSpec("empty_mp4", "empty.mp4", 0.0, has_audio=False, is_media=False, kind="empty"),
)

SPECS: dict[str, MediaSpec] = {s.name: s for s in _SPEC_LIST}


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(cmd: list[str], what: str, error: type[MediaError] = MediaError) -> subprocess.CompletedProcess:
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


def _ffmpeg_command(spec: MediaSpec, out: Path, duration: float) -> list[str]:
    d = f"{duration:.6f}"
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    maps: list[str] = []
    n_inputs = 0
    if spec.video_codec:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={VIDEO_SIZE}:rate={VIDEO_RATE}:duration={d}"]
        maps += ["-map", f"{n_inputs}:v"]
        n_inputs += 1
    for track in spec.audio:
        cmd += ["-f", "lavfi", "-i",
                f"sine=frequency={track.frequency:g}:sample_rate={track.sample_rate}:duration={d}"]
        maps += ["-map", f"{n_inputs}:a"]
        n_inputs += 1
    cmd += maps
    if spec.video_codec:
        cmd += [a.format(s="v:0") for a in _VIDEO_ENCODERS[spec.video_codec]]
    for i, track in enumerate(spec.audio):
        s = f"a:{i}"
        cmd += [a.format(s=s) for a in _AUDIO_ENCODERS[track.codec]]
        cmd += [f"-ac:{s}", str(track.channels)]
        if track.default is not None:
            cmd += [f"-disposition:{s}", "default" if track.default else "0"]
    for key, value in spec.tags:
        cmd += ["-metadata", f"{key}={value}"]
    cmd += list(spec.extra_args)
    cmd += ["-f", spec.muxer, str(out)]
    return cmd


def _build_ffmpeg(spec: MediaSpec, out: Path, duration: float) -> None:
    _run(_ffmpeg_command(spec, out, duration), f"generating {spec.name!r}")
    if spec.truncate is not None:
        size = out.stat().st_size
        os.truncate(out, int(size * spec.truncate))


_NOTES = (
    "Meeting notes\n"
    "=============\n"
    "These are plain text notes, not audio or video.\n"
    "Uploading this file must be rejected with a clear error.\n"
)


def _build_text(spec: MediaSpec, out: Path, duration: float) -> None:
    # "text" stays well below the ~400 byte size at which ffmpeg's tty demuxer
    # starts accepting .txt files; "text_large" is well above it.
    text = _NOTES if spec.name == "text" else _NOTES * 16
    out.write_text(text, encoding="utf-8")


_BUILDERS: dict[str, Callable[[MediaSpec, Path, float], None]] = {
    "ffmpeg": _build_ffmpeg,
    "text": _build_text,
    # Seeded, so every run gets the same bytes: now and then fresh random bytes happen to hold enough MPEG audio
    # sync words for ffmpeg to open them as MP3, which would make the suite flaky.
    "random": lambda spec, out, duration: out.write_bytes(random.Random(20261122).randbytes(64 * 1024)),
    "empty": lambda spec, out, duration: out.write_bytes(b""),
}


def make_media(spec_name: str, directory: Path, *, duration: float = DEFAULT_DURATION) -> Path:
    """Generate ``SPECS[spec_name]`` under ``directory`` and return its path.

    The file lands in ``directory/<name>-<duration>s/<spec.filename>`` so the
    basename is always ``spec.filename``.  An existing file there is reused,
    so repeated calls (same name and duration, same directory) cost nothing.
    Files are written to a temporary name and renamed into place, so a failed
    or concurrent generation never leaves a half-written file in the cache.
    """
    try:
        spec = SPECS[spec_name]
    except KeyError:
        raise ValueError(f"unknown media spec {spec_name!r}; known: {', '.join(SPECS)}") from None
    duration = float(duration)
    if not duration > 0:
        raise ValueError(f"duration must be > 0, got {duration!r}")
    target_dir = Path(directory) / f"{spec.name}-{duration!r}s"
    target = target_dir / spec.filename
    if target.exists():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target_dir / f".{uuid.uuid4().hex}.tmp"
    try:
        _BUILDERS[spec.kind](spec, tmp, duration)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


# --------------------------------------------------------------------------
# Probing (parses `ffmpeg -i` because there is no ffprobe)
# --------------------------------------------------------------------------

_DISPOSITIONS = {
    "default", "dub", "original", "comment", "lyrics", "karaoke", "forced",
    "hearing impaired", "visual impaired", "clean effects", "attached pic",
    "timed thumbnails", "non-diegetic", "captions", "descriptions", "metadata",
    "dependent", "still image", "multilayer",
}
_NAMED_LAYOUTS = {
    "mono": 1, "stereo": 2, "downmix": 2, "binaural": 2, "quad": 4,
    "hexagonal": 6, "octagonal": 8, "cube": 8, "hexadecagonal": 16,
}
_INPUT_RE = re.compile(r"^Input #0, (?P<format>.+?), from '(?P<path>.*)':\s*$")
_DURATION_RE = re.compile(
    r"^\s+Duration: (?P<dur>N/A|[\d:.]+)(?:, start: (?P<start>-?[\d.]+))?"
    r"(?:, bitrate: (?P<br>N/A|\d+) ?(?:kb/s)?)?"
)
_STREAM_RE = re.compile(
    r"^\s+Stream #0:(?P<index>\d+)(?:\[(?P<id>[^\]]+)\])?(?:\((?P<lang>[^)]+)\))?"
    r": (?P<type>\w+): (?P<rest>.*)$"
)
_KBPS_RE = re.compile(r"^(\d+) kb/s$")


def _hms(value: str) -> float | None:
    if value == "N/A":
        return None
    h, m, s = value.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside (), [] (e.g. 'yuv420p(tv, bt709)')."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def _channels(layout: str) -> int | None:
    base = layout.split("(")[0].strip()
    if base in _NAMED_LAYOUTS:
        return _NAMED_LAYOUTS[base]
    m = re.fullmatch(r"(\d+) channels", base)
    if m:
        return int(m.group(1))
    if re.fullmatch(r"\d+(\.\d+)+", base):  # 5.1 -> 6, 7.1.4 -> 12
        return sum(int(x) for x in base.split("."))
    return None


def _parse_stream(m: re.Match) -> dict:
    rest = m.group("rest").rstrip()
    dispositions = []
    while True:  # trailing " (default) (forced)" flags
        d = re.search(r"\s*\(([a-z -]+)\)$", rest)
        if not d or d.group(1) not in _DISPOSITIONS:
            break
        dispositions.insert(0, d.group(1))
        rest = rest[: d.start()]
    parts = _split_top(rest)
    codec, _, detail = parts[0].partition(" ")
    stream = {
        "index": int(m.group("index")),
        "id": m.group("id"),
        "language": m.group("lang"),
        "type": m.group("type").lower(),
        "codec": codec,
        "codec_detail": detail.strip(),
        "default": "default" in dispositions,
        "dispositions": dispositions,
        "bitrate_kbps": None,
        "start": None,
        "tags": {},
    }
    for part in parts[1:]:
        if k := _KBPS_RE.match(part):
            stream["bitrate_kbps"] = int(k.group(1))
        elif part.startswith("start "):
            stream["start"] = float(part.split()[1])
    if stream["type"] == "audio":
        stream.update(sample_rate=None, channels=None, channel_layout=None, sample_fmt=None)
        fields = parts[1:]
        for i, part in enumerate(fields):
            if hz := re.fullmatch(r"(\d+) Hz", part):
                stream["sample_rate"] = int(hz.group(1))
                if i + 1 < len(fields):
                    stream["channel_layout"] = fields[i + 1]
                    stream["channels"] = _channels(fields[i + 1])
                if i + 2 < len(fields) and not _KBPS_RE.match(fields[i + 2]):
                    stream["sample_fmt"] = fields[i + 2]
                break
    elif stream["type"] == "video":
        stream.update(width=None, height=None, pix_fmt=None, fps=None)
        if len(parts) > 1 and not re.match(r"\d+x\d+", parts[1]):
            stream["pix_fmt"] = parts[1].split("(")[0]
        for part in parts[1:]:
            if (wh := re.match(r"(\d+)x(\d+)", part)) and stream["width"] is None:
                stream["width"], stream["height"] = int(wh.group(1)), int(wh.group(2))
            elif fps := re.fullmatch(r"([\d.]+) fps", part):
                stream["fps"] = float(fps.group(1))
    return stream


def _parse_tag(line: str) -> tuple[str, str]:
    key, _, value = line.strip().partition(":")
    return key.strip(), value.strip()


def probe_output(path: Path) -> dict:
    """Describe a file from ``ffmpeg -hide_banner -i path`` output.

    Raises :class:`ProbeError` (with ffmpeg's stderr) when ffmpeg cannot open
    the file.  Otherwise returns::

        {"format": "mov,mp4,m4a,3gp,3g2,mj2", "duration": 2.0 | None,
         "start": 0.0 | None, "bitrate_kbps": int | None, "tags": {"title": ...},
         "audio": [stream, ...], "video": [stream, ...],
         "streams": [every stream incl. subtitle/data], "stderr": "..."}

    Every stream has index, id, language, type, codec, codec_detail, default,
    dispositions, bitrate_kbps, start, tags; audio streams add sample_rate,
    channels, channel_layout, sample_fmt; video streams add width, height,
    pix_fmt, fps.  ``duration`` is what the container claims, see
    :func:`decoded_duration` for what actually decodes.
    """
    path = Path(path)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"probing {path}: ffmpeg timed out", cmd=cmd) from exc
    # Without an output file ffmpeg always exits non-zero ("At least one output
    # file must be specified"), so success is decided by the Input #0 header.
    lines = proc.stderr.splitlines()
    start = next((i for i, ln in enumerate(lines) if _INPUT_RE.match(ln)), None)
    if start is None:
        raise ProbeError(f"ffmpeg cannot open {path}", cmd=cmd, stderr=proc.stderr)

    info: dict = {
        "format": _INPUT_RE.match(lines[start]).group("format"),
        "duration": None, "start": None, "bitrate_kbps": None,
        "tags": {}, "audio": [], "video": [], "streams": [], "stderr": proc.stderr,
    }
    tag_target: dict | None = None  # dict receiving "key : value" lines
    tag_indent = 0
    last_key: str | None = None
    current: dict | None = None  # last stream seen
    for line in lines[start + 1:]:
        if not line.startswith(" "):
            if line.startswith("["):  # interleaved log line from a demuxer/decoder
                continue
            break  # end of the Input #0 block
        indent = len(line) - len(line.lstrip(" "))
        stripped = line.strip()
        if tag_target is not None and indent > tag_indent and ":" in stripped:
            key, value = _parse_tag(line)
            if key:
                tag_target[key] = value
                last_key = key
            elif last_key:  # continuation line of a multi-line value
                tag_target[last_key] += "\n" + value
            continue
        tag_target = None
        if stripped == "Metadata:":
            if indent == 2:
                tag_target = info["tags"]
            elif current is not None and indent == 4:
                tag_target = current["tags"]
            else:
                tag_target = {}  # program/chapter metadata: parsed and dropped
            tag_indent, last_key = indent, None
        elif m := _DURATION_RE.match(line):
            info["duration"] = _hms(m.group("dur"))
            info["start"] = float(m.group("start")) if m.group("start") else None
            br = m.group("br")
            info["bitrate_kbps"] = int(br) if br and br != "N/A" else None
        elif m := _STREAM_RE.match(line):
            current = _parse_stream(m)
            info["streams"].append(current)
            if current["type"] in ("audio", "video"):
                info[current["type"]].append(current)
        elif indent <= 2:
            current = None  # "Program 1", "Chapters:" ...
    return info


def decoded_duration(path: Path, stream: str | None = "a:0") -> float:
    """Seconds that actually decode from ``stream`` (default: first audio stream).

    Runs ``ffmpeg -i path -map 0:<stream> -progress pipe:1 -f null -`` and
    returns the last ``out_time_us`` (falling back to the last ``time=`` on
    stderr).  ``stream=None`` lets ffmpeg pick its default streams (so the
    result is the longest of them).  Truncated files decode short but ffmpeg
    still exits 0 for them; a non-zero exit (unopenable file, no such stream)
    raises :class:`MediaError`.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path)]
    if stream is not None:
        cmd += ["-map", f"0:{stream}"]
    cmd += ["-progress", "pipe:1", "-f", "null", "-"]
    proc = _run(cmd, f"decoding {path}")
    times = re.findall(r"^out_time_us=(\d+)\s*$", proc.stdout, re.M)
    if times:
        return int(times[-1]) / 1_000_000
    stats = re.findall(r"time=(\d+:\d+:[\d.]+)", proc.stderr)
    if stats:
        return _hms(stats[-1])
    raise MediaError(f"decoding {path}: no progress output", cmd=cmd, stderr=proc.stderr)
