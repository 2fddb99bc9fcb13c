"""Self-tests for tests/media/: every spec is generated once and checked.

Run standalone (before pytest-django is configured) with::

    .venv/bin/python -m pytest -p no:cacheprovider -p no:django tests/test_media.py -q
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests import media
from tests.media import generate, specs
from tests.media.ffmpeg import run_ffmpeg
from tests.media import (
    SPECS,
    MediaError,
    ProbeError,
    decoded_duration,
    make_media,
    probe_output,
)

REQUESTED = 2.0
TOLERANCE = 0.1
MAX_SECONDS_PER_FILE = 5.0  # normally < 0.3 s; generous so a loaded CI box doesn't flake

ALL = sorted(SPECS)
OPENABLE = [n for n in ALL if SPECS[n].is_media]
UNOPENABLE = [n for n in ALL if not SPECS[n].is_media]
WITH_AUDIO = [n for n in ALL if SPECS[n].has_audio]
WITHOUT_AUDIO = [n for n in OPENABLE if not SPECS[n].has_audio]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def generated(media_dir) -> dict[str, tuple[Path, float]]:
    """Generate every spec once; name -> (path, seconds it took)."""
    out = {}
    start = time.perf_counter()
    for name in ALL:
        t = time.perf_counter()
        path = make_media(name, media_dir, duration=REQUESTED)
        out[name] = (path, time.perf_counter() - t)
    total = time.perf_counter() - start
    print(f"\n[tests.media] generated {len(out)} files in {total:.2f}s: "
          + ", ".join(f"{n}={s:.2f}s" for n, (_, s) in out.items()))
    return out


@pytest.fixture(scope="session")
def probes(generated) -> dict[str, dict]:
    return {n: probe_output(p) for n, (p, _) in generated.items() if SPECS[n].is_media}


# ---------------------------------------------------------------- the table


def test_spec_table_is_consistent():
    for name, spec in SPECS.items():
        assert spec.name == name
        assert spec.has_audio == bool(spec.audio) or spec.truncate is not None, name
        assert not (spec.has_audio and not spec.is_media), name
        assert spec.duration == (REQUESTED if spec.has_audio else 0.0), name
        assert spec.kind in generate._BUILDERS, name
        if spec.kind == "ffmpeg":
            assert spec.muxer, name
            assert all(t.codec in specs._AUDIO_ENCODERS for t in spec.audio), name
            assert spec.video_codec is None or spec.video_codec in specs._VIDEO_ENCODERS
    # filenames may repeat across specs only because each spec gets its own subdir
    assert {SPECS["text"].filename, SPECS["random_bytes_mp4"].filename,
            SPECS["empty_mp4"].filename} == {"notes.txt", "random.mp4", "empty.mp4"}


# ---------------------------------------------------------------- generation


@pytest.mark.parametrize("name", ALL)
def test_generated_file_exists_and_was_fast(generated, name):
    path, seconds = generated[name]
    spec = SPECS[name]
    assert path.name == spec.filename
    assert path.is_file()
    assert seconds < MAX_SECONDS_PER_FILE
    if name == "empty_mp4":
        assert path.stat().st_size == 0
    elif name == "random_bytes_mp4":
        assert path.stat().st_size == 64 * 1024
    else:
        assert path.stat().st_size > 0
    # no temp files left behind
    assert [p.name for p in path.parent.iterdir()] == [spec.filename]


def test_second_call_is_cached(generated, media_dir, monkeypatch):
    path, _ = generated["mp4_aac"]
    mtime = path.stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("ffmpeg must not run for a cached file")

    monkeypatch.setattr(subprocess, "run", boom)
    assert make_media("mp4_aac", media_dir, duration=REQUESTED) == path
    assert make_media("mp4_aac", media_dir) == path  # default duration is 2.0
    assert path.stat().st_mtime_ns == mtime


def test_other_duration_is_a_separate_file(generated, media_dir):
    short = make_media("mp3", media_dir, duration=0.5)
    assert short != generated["mp3"][0]
    assert short.name == "tone.mp3"
    assert decoded_duration(short) == pytest.approx(0.5, abs=TOLERANCE)


def test_unknown_spec_and_bad_duration(media_dir):
    with pytest.raises(ValueError, match="unknown media spec"):
        make_media("nope", media_dir)
    with pytest.raises(ValueError, match="duration"):
        make_media("mp3", media_dir, duration=0)


def test_generation_failure_reports_ffmpeg_stderr(tmp_path, monkeypatch):
    broken = media.MediaSpec(
        "broken", "broken.mp4", 2.0, has_audio=True, is_media=True, muxer="mp4",
        audio=(media.AudioTrack("aac", 44100, 2),), extra_args=("-c:a", "no_such_encoder"),
    )
    monkeypatch.setitem(SPECS, "broken", broken)
    with pytest.raises(MediaError, match="no_such_encoder") as exc:
        make_media("broken", tmp_path)
    assert "generating 'broken'" in str(exc.value)
    assert exc.value.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "failed generation left files"


# ---------------------------------------------------------------- probing


@pytest.mark.parametrize("name", OPENABLE)
def test_probe_streams_match_spec(probes, name):
    spec, info = SPECS[name], probes[name]
    assert info["format"] == spec.format
    assert [s["codec"] for s in info["video"]] == ([spec.video_codec] if spec.video_codec else [])
    if spec.video_codec in ("h264", "vp9", "mpeg4"):
        v = info["video"][0]
        assert (v["width"], v["height"], v["fps"]) == (160, 120, 10.0)
    got = [(a["codec"], a["sample_rate"], a["channels"]) for a in info["audio"]]
    want = [(t.codec, t.sample_rate, t.channels) for t in spec.audio] if spec.has_audio else []
    assert got == want


@pytest.mark.parametrize("name", [n for n in WITH_AUDIO if not SPECS[n].truncated])
def test_decoded_duration_matches_request(generated, probes, name):
    path, _ = generated[name]
    for i in range(len(probes[name]["audio"])):
        assert decoded_duration(path, f"a:{i}") == pytest.approx(REQUESTED, abs=TOLERANCE)
    # The container's claim is looser: AVI reports 2.10 s for a 2 s file.
    assert probes[name]["duration"] == pytest.approx(REQUESTED, abs=0.15)


@pytest.mark.parametrize("name", WITHOUT_AUDIO)
def test_no_audio_specs_have_no_audio_streams(generated, probes, name):
    assert probes[name]["audio"] == []
    with pytest.raises(MediaError, match="matches no streams"):
        decoded_duration(generated[name][0])


@pytest.mark.parametrize("name", UNOPENABLE)
def test_unopenable_files_raise_probe_error(generated, name):
    with pytest.raises(ProbeError) as exc:
        probe_output(generated[name][0])
    assert "Invalid data found when processing input" in exc.value.stderr
    with pytest.raises(MediaError):
        decoded_duration(generated[name][0])


def test_truncated_mp4_has_no_moov(generated):
    with pytest.raises(ProbeError, match="moov atom not found"):
        probe_output(generated["truncated_mp4"][0])


def test_truncated_faststart_opens_but_decodes_short(generated, probes):
    info = probes["truncated_faststart_mp4"]
    assert info["duration"] == pytest.approx(REQUESTED, abs=TOLERANCE)  # the header lies
    decoded = decoded_duration(generated["truncated_faststart_mp4"][0])
    assert 0.1 < decoded < 0.75 * REQUESTED


def test_two_tracks_default_disposition(probes):
    a0, a1 = probes["mkv_two_tracks"]["audio"]
    assert (a0["channels"], a0["default"]) == (2, False)
    assert (a1["channels"], a1["default"]) == (1, True)
    assert a1["dispositions"] == ["default"]


def test_tags_and_bitrates(probes):
    assert probes["mp3"]["tags"]["title"] == SPECS["mp3"].title == "Test Tone 440"
    assert probes["mp4_aac"]["tags"]["title"] == "Test Clip"
    assert "title" not in probes["mov_aac"]["tags"]
    assert probes["mp3"]["audio"][0]["bitrate_kbps"] == 64
    assert probes["mkv_ac3"]["audio"][0]["channel_layout"] == "5.1(side)"
    assert probes["mp4_aac"]["audio"][0]["default"] is True


def test_large_text_is_opened_by_the_tty_demuxer(probes, generated):
    # Worth knowing for upload validation: a .txt over ~400 bytes "opens".
    assert os.path.getsize(generated["text_large"][0]) > 1024
    assert [v["codec"] for v in probes["text_large"]["video"]] == ["ansi"]
    assert probes["text_large"]["audio"] == []


def test_probe_parses_mp3_output_like_a_conversion_would_produce(tmp_path):
    """probe_output on an MP3 written the way a converter would (libmp3lame, CBR 192k)."""
    src = make_media("mp4_aac", tmp_path)
    out = tmp_path / "out.mp3"
    run_ffmpeg([media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
                "-i", str(src), "-vn", "-c:a", "libmp3lame", "-b:a", "192k", "-ar", "44100",
                "-ac", "2", str(out)], "test conversion")
    info = probe_output(out)
    assert info["format"] == "mp3"
    assert info["video"] == []
    (a,) = info["audio"]
    assert (a["codec"], a["sample_rate"], a["channels"], a["bitrate_kbps"]) == ("mp3", 44100, 2, 192)
    assert info["tags"]["title"] == "Test Clip"  # ffmpeg carries global metadata over
    assert decoded_duration(out) == pytest.approx(REQUESTED, abs=TOLERANCE)
