"""What the engine tests share: the media specs by kind, processes, tones and probes of the output."""

import os
import re
import subprocess
from pathlib import Path

from conversions import engine
from conversions.engine import (
    AudioStream,
    MediaInfo,
)
from tests.media import SPECS, probe_output

AUDIO_SPECS = [name for name, spec in SPECS.items() if spec.has_audio and not spec.truncated]
VIDEO_ONLY_SPECS = [
    name for name, spec in SPECS.items()
    if spec.is_media and not spec.has_audio and spec.kind == "ffmpeg" and spec.video_codec != "png"
]
UNREADABLE_SPECS = [name for name in SPECS if name not in AUDIO_SPECS + VIDEO_ONLY_SPECS + ["truncated_faststart_mp4"]]


def default_track(spec):
    """The track a player would pick: the one flagged default, else the first."""
    return next((track for track in spec.audio if track.default), spec.audio[0])


def children_of_this_process() -> dict[int, str]:
    """pid -> state of every direct child of the test process (zombies included), read from /proc."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == os.getpid():
            children[int(entry.name)] = state
    return children


def conversions_started(processes) -> list[subprocess.Popen]:
    return [process for process in processes if "-progress" in process.args]


def run_ffmpeg(*args: str) -> None:
    subprocess.run(
        [engine.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        capture_output=True, check=True, timeout=120,
    )


def tone(target: Path, *, rate: int = 44100, channels: int = 2, seconds: float = 2.0, volume: float = 1.0) -> Path:
    """A 440 Hz sine as 16-bit PCM WAV, at any sample rate and channel count (and level) media.SPECS lacks."""
    run_ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration={seconds},volume={volume}",
        "-ac", str(channels), "-c:a", "pcm_s16le", "-f", "wav", str(target),
    )
    return target


def integrated_loudness(path: Path) -> float:
    """Integrated loudness in LUFS, as ffmpeg's ebur128 filter measures it (the "I:" line of its summary)."""
    completed = subprocess.run(
        [engine.ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
         "-filter_complex", "ebur128", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    summary = completed.stderr.rpartition("Summary:")[2]
    return float(re.search(r"^\s*I:\s*(-?[\d.]+) LUFS", summary, re.MULTILINE).group(1))


def mp3_frame(sample_rate: int) -> float:
    """Seconds in one MPEG-1 layer III frame: the finest step an MP3's length can take."""
    return 1152 / sample_rate


def audio_of(path: Path) -> dict:
    [stream] = probe_output(path)["audio"]
    return stream


def video_with_audio(target: Path, size: str) -> Path:
    run_ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=10:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mp4", str(target),
    )
    return target


def cover_of(path: Path) -> dict:
    [picture] = probe_output(path)["video"]
    assert picture["codec"] == "mjpeg"
    assert "attached pic" in picture["dispositions"]
    return picture


def info_with(*streams: AudioStream) -> MediaInfo:
    return MediaInfo(format_name="matroska,webm", duration=2.0, audio_streams=streams, has_video=True)


STEREO = AudioStream(index=0, codec="aac", sample_rate=44100, channels=2, default=True)


