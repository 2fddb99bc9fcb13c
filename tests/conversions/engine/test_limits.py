"""conversions.engine: media that would cost too much. The duration limit at the probe (headers, or a measurement
when they give none), again while converting (headers lie), and the cap on the output's size. Real ffmpeg."""

import subprocess

import pytest

from conversions import engine
from conversions.engine import OutputOptions, OutputTooLarge, TooLong
from tests.media.crafted import flac_header_claims, silent_flac

LIMIT = 60.0  # seconds: the tests' MAX_DURATION_MINUTES of 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("limits")


def flac(folder, seconds: float, header: str | float | None = "real"):
    path = silent_flac(folder / f"silence-{seconds}-{header}.flac", seconds)
    return path if header == "real" else flac_header_claims(path, header)


def leftovers(folder, target) -> list:
    return [path for path in folder.iterdir() if path.name.startswith(target.name)]


# --- at the probe ----------------------------------------------------------------------------------------------
def test_a_small_file_whose_header_says_it_is_too_long_is_refused(folder):
    bomb = flac(folder, 180)
    assert bomb.stat().st_size < 100_000  # three minutes of silence in a few KB
    assert engine.probe(bomb).duration == pytest.approx(180.0)
    with pytest.raises(TooLong) as refused:
        engine.probe(bomb, max_duration=LIMIT)
    assert refused.value.code == "too_long" and refused.value.status == 422
    assert refused.value.message == "The audio in this file is longer than the 1-minute limit."


def test_a_file_whose_header_gives_no_duration_is_measured_and_refused(folder):
    bomb = flac(folder, 180, header=None)
    assert engine.probe(bomb).duration is None
    with pytest.raises(TooLong) as refused:
        engine.probe(bomb, max_duration=LIMIT)
    assert "measured" in refused.value.detail


def test_a_file_with_no_duration_under_the_limit_gets_its_measured_duration(folder):
    info = engine.probe(flac(folder, 20, header=None), max_duration=LIMIT)
    assert info.duration == pytest.approx(20.0, abs=0.2)


def test_a_duration_estimated_from_the_bitrate_is_measured(folder):
    # Raw ADTS AAC has no duration in any header: ffmpeg estimates one from the bitrate, which a file can fool.
    adts = folder / "tone.aac"
    subprocess.run(
        [engine.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=8000",
         "-t", "90", "-c:a", "aac", "-b:a", "8k", "-f", "adts", str(adts)], check=True, capture_output=True, timeout=60,
    )
    assert engine.probe(adts).duration_estimated
    with pytest.raises(TooLong) as refused:
        engine.probe(adts, max_duration=LIMIT)
    assert "measured" in refused.value.detail
    assert engine.probe(adts, max_duration=120).duration == pytest.approx(90.0, abs=0.5)


def test_exactly_at_the_limit_is_accepted_and_converts(folder, tmp_path):
    source = flac(folder, LIMIT)
    assert engine.probe(source, max_duration=LIMIT).duration == pytest.approx(LIMIT)
    result = engine.convert(source, tmp_path / "out.mp3", options=OutputOptions(), max_duration=LIMIT)
    assert result.duration == pytest.approx(LIMIT, abs=0.2)


# --- while converting: the header said less ----------------------------------------------------------------------
def test_audio_longer_than_its_header_says_fails_while_converting_and_leaves_nothing(folder, tmp_path):
    liar = flac(folder, 180, header=10)
    info = engine.probe(liar, max_duration=LIMIT)
    assert info.duration == pytest.approx(10.0)  # the header passes the upload check
    target = tmp_path / "out.mp3"
    with pytest.raises(TooLong) as failed:
        engine.convert(liar, target, options=OutputOptions(), info=info, max_duration=LIMIT)
    assert failed.value.message == "The audio in this file is longer than the 1-minute limit."
    assert "the output reached" in failed.value.detail
    assert list(tmp_path.iterdir()) == []  # no MP3, no cover, no partial file


def test_the_output_is_cut_just_past_the_limit_even_between_progress_reports(folder):
    liar = flac(folder, 180, header=10)
    command = engine.build_command(liar, "out.mp3", info=engine.probe(liar), options=OutputOptions(),
                                   max_duration=LIMIT, max_output_bytes=1024)
    assert command[command.index("-t") + 1] == "61.000"
    assert command[command.index("-fs") + 1] == "1024"
    assert command.index("-t") > command.index("-map")  # an output option: it cuts what is written


def test_without_limits_the_same_file_converts_in_full(folder, tmp_path):
    result = engine.convert(flac(folder, 180, header=10), tmp_path / "out.mp3", options=OutputOptions())
    assert result.duration == pytest.approx(180.0, abs=0.5)


# --- the size of the output --------------------------------------------------------------------------------------
def test_an_output_reaching_the_size_cap_fails_and_leaves_nothing(media, tmp_path):
    source = media("wav", duration=40.0)
    target = tmp_path / "out.mp3"
    limit = 1024 * 1024  # 40 s at 320 kbps is 1.6 MB
    with pytest.raises(OutputTooLarge) as failed:
        engine.convert(source, target, options=OutputOptions(bitrate_kbps=320), max_output_bytes=limit)
    assert failed.value.code == "output_too_large" and failed.value.status == 422
    assert failed.value.message == "The MP3 would be larger than the 1 MB limit, so the conversion was stopped."
    assert list(tmp_path.iterdir()) == []


def test_an_output_under_the_size_cap_converts(media, tmp_path):
    result = engine.convert(media("wav", duration=40.0), tmp_path / "out.mp3",
                            options=OutputOptions(bitrate_kbps=128), max_output_bytes=1024 * 1024)
    assert result.size < 1024 * 1024 and result.duration == pytest.approx(40.0, abs=0.2)
