"""Making media files: one spec, synthesised with ffmpeg's lavfi sources (or written as text or bytes)."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable
from pathlib import Path

from .ffmpeg import ffmpeg_exe, run_ffmpeg
from .specs import _AUDIO_ENCODERS, _VIDEO_ENCODERS, DEFAULT_DURATION, SPECS, VIDEO_RATE, VIDEO_SIZE, MediaSpec


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
    run_ffmpeg(_ffmpeg_command(spec, out, duration), f"generating {spec.name!r}")
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

