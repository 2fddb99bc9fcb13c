"""Reading media files back: `probe_output` parses `ffmpeg -i` (there is no ffprobe), `decoded_duration` decodes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .ffmpeg import _TIMEOUT, MediaError, ProbeError, ffmpeg_exe, run_ffmpeg


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
    proc = run_ffmpeg(cmd, f"decoding {path}")
    times = re.findall(r"^out_time_us=(\d+)\s*$", proc.stdout, re.M)
    if times:
        return int(times[-1]) / 1_000_000
    stats = re.findall(r"time=(\d+:\d+:[\d.]+)", proc.stderr)
    if stats:
        return _hms(stats[-1])
    raise MediaError(f"decoding {path}: no progress output", cmd=cmd, stderr=proc.stderr)
