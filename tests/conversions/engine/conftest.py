"""Engine test fixtures: recorded ffmpeg processes and inputs tests/media lacks, made here with ffmpeg."""

import subprocess
from pathlib import Path

import pytest

from tests.conversions.engine.helpers import run_ffmpeg, tone


@pytest.fixture
def ffmpeg_processes(monkeypatch):
    """Every process the engine starts during the test, recorded (the processes themselves are real)."""
    started: list[subprocess.Popen] = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    return started


@pytest.fixture(scope="module")
def quiet_source(tmp_path_factory) -> Path:
    """4 s of sine at volume 0.05 (about -48 LUFS) at 48 kHz, so "the source's rate" is not the 44100 fallback."""
    return tone(tmp_path_factory.mktemp("quiet") / "quiet.wav", rate=48000, seconds=4.0, volume=0.05)


@pytest.fixture(scope="module")
def undecodable_mp4(tmp_path_factory) -> Path:
    """An mp4 whose audio ffmpeg demuxes but cannot decode: AAC with its codec made unrecognisable.

    Renaming the "mp4a" sample entry alone is not enough for ffmpeg 9, which still finds AAC from the object
    type in the "esds" box inside it; renaming that box too leaves the codec unknown ("none").
    """
    directory = tmp_path_factory.mktemp("undecodable")
    run_ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2", "-c:a", "aac", "-f", "mp4",
        str(directory / "aac.mp4"),
    )
    data = (directory / "aac.mp4").read_bytes()
    assert data.count(b"mp4a") == 1 and data.count(b"esds") == 1
    target = directory / "unknown_codec.mp4"
    target.write_bytes(data.replace(b"mp4a", b"zzzz", 1).replace(b"esds", b"zzzz", 1))
    return target


