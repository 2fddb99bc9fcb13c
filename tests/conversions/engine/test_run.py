"""conversions.engine.run: a conversion with the real ffmpeg on generated media, start to end: every container
and codec, bad input, progress, cancel and timeout, and the processes it leaves behind (none)."""

import os
import shutil
import signal

import pytest

from conversions import engine
from conversions.engine import (
    ConversionCancelled,
    ConversionTimeout,
    CorruptMedia,
    NoAudioStream,
    OutputOptions,
    UnsupportedMedia,
)
from tests.conversions.engine.helpers import AUDIO_SPECS, children_of_this_process, conversions_started, default_track
from tests.media import SPECS, decoded_duration, probe_output


# --- convert() -------------------------------------------------------------------------------------------------
def test_default_is_vbr_v2_with_the_source_duration(media, tmp_path):
    target = tmp_path / "out.mp3"
    result = engine.convert(media("mp4_aac", duration=3.0), target, options=OutputOptions())
    probed = probe_output(target)
    assert [stream["codec"] for stream in probed["audio"]] == ["mp3"]
    assert probed["video"] == []
    assert decoded_duration(target) == pytest.approx(3.0, abs=0.1)
    assert result.duration == pytest.approx(3.0, abs=0.1)
    assert result.size == target.stat().st_size > 0
    head = target.read_bytes()[:8192]
    assert b"Xing" in head and b"Info" not in head  # LAME writes "Xing" for VBR, "Info" for CBR


@pytest.mark.parametrize("bitrate", [128, 320])
def test_cbr_bitrate_is_applied(media, tmp_path, bitrate):
    target = tmp_path / "out.mp3"
    engine.convert(media("mkv_opus"), target, options=OutputOptions(bitrate_kbps=bitrate))
    assert probe_output(target)["audio"][0]["bitrate_kbps"] == bitrate
    assert b"Info" in target.read_bytes()[:8192]


def test_vbr_quality_changes_the_output(media, tmp_path):
    best, smallest = tmp_path / "v0.mp3", tmp_path / "v9.mp3"
    engine.convert(media("wav"), best, options=OutputOptions(vbr_quality=0))
    engine.convert(media("wav"), smallest, options=OutputOptions(vbr_quality=9))
    assert best.stat().st_size > smallest.stat().st_size


def test_surround_ac3_is_downmixed_to_stereo(media, tmp_path):
    assert engine.probe(media("mkv_ac3")).default_audio.channels == 6
    target = tmp_path / "out.mp3"
    engine.convert(media("mkv_ac3"), target, options=OutputOptions())
    assert probe_output(target)["audio"][0]["channels"] == 2
    assert decoded_duration(target) == pytest.approx(2.0, abs=0.1)


def test_two_tracks_converts_the_default_track(media, tmp_path):
    info = engine.probe(media("mkv_two_tracks"))
    assert info.default_audio.index == 1
    target = tmp_path / "out.mp3"
    engine.convert(media("mkv_two_tracks"), target, options=OutputOptions(), info=info)
    # a:0 is stereo, a:1 (the default) is mono: a mono MP3 proves a:1 was picked.
    assert probe_output(target)["audio"][0]["channels"] == 1


def test_mp3_input_is_reencoded_and_its_tags_dropped(media, tmp_path):
    source = media("mp3")
    assert probe_output(source)["tags"]["title"] == SPECS["mp3"].title
    target = tmp_path / "out.mp3"
    engine.convert(source, target, options=OutputOptions(bitrate_kbps=128))
    probed = probe_output(target)
    assert probed["audio"][0]["codec"] == "mp3"
    assert probed["audio"][0]["bitrate_kbps"] == 128
    assert "title" not in probed["tags"]
    assert decoded_duration(target) == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("name", AUDIO_SPECS)
def test_every_audio_container_and_codec_converts(media, tmp_path, name):
    spec = SPECS[name]
    target = tmp_path / "out.mp3"
    engine.convert(media(name), target, options=OutputOptions())
    probed = probe_output(target)
    assert [stream["codec"] for stream in probed["audio"]] == ["mp3"]
    assert probed["video"] == []
    assert probed["audio"][0]["channels"] == min(default_track(spec).channels, 2)
    assert decoded_duration(target) == pytest.approx(spec.expected_audio_duration(), abs=0.1)


def test_damaged_input_raises_corrupt_media_with_ffmpegs_words(media, tmp_path):
    with pytest.raises(CorruptMedia) as raised:
        engine.convert(media("truncated_faststart_mp4", duration=6.0), tmp_path / "out.mp3", options=OutputOptions())
    assert raised.value.code == "corrupt_media"
    assert "damaged" in raised.value.message
    assert raised.value.detail.strip()  # what ffmpeg printed, for operators


def test_no_audio_raises_no_audio_stream(media, tmp_path):
    with pytest.raises(NoAudioStream) as raised:
        engine.convert(media("mp4_noaudio"), tmp_path / "out.mp3", options=OutputOptions())
    assert raised.value.code == "no_audio_stream"
    assert not (tmp_path / "out.mp3").exists()


def test_unreadable_input_raises_unsupported_media(media, tmp_path):
    with pytest.raises(UnsupportedMedia):
        engine.convert(media("text"), tmp_path / "out.mp3", options=OutputOptions())


def test_progress_is_reported_and_ends_at_100(media, tmp_path):
    reported: list[float] = []
    source = media("wav", duration=20.0)
    engine.convert(source, tmp_path / "out.mp3", options=OutputOptions(), on_progress=reported.append)
    assert len(reported) >= 2  # at least one value read from ffmpeg, then the final 100
    assert reported[-1] == 100.0
    assert all(0.0 <= value <= 100.0 for value in reported)
    assert reported == sorted(reported)


def test_a_file_named_like_an_option_in_a_folder_with_spaces_converts(media, tmp_path, monkeypatch):
    folder = tmp_path / "my videos (2024)"
    folder.mkdir()
    shutil.copy(media("mp4_aac"), folder / "-i evil.mp4")
    monkeypatch.chdir(folder)
    result = engine.convert("-i evil.mp4", "-f out.mp3", options=OutputOptions())
    target = folder / "-f out.mp3"
    assert target.exists()
    assert result.size == target.stat().st_size
    assert probe_output(target)["audio"][0]["codec"] == "mp3"
    assert decoded_duration(target) == pytest.approx(2.0, abs=0.1)
    assert sorted(path.name for path in folder.iterdir()) == ["-f out.mp3", "-i evil.mp4"]


# --- processes -------------------------------------------------------------------------------------------------
def test_no_ffmpeg_process_remains_after_convert(media, tmp_path, ffmpeg_processes):
    engine.convert(media("mp4_aac"), tmp_path / "out.mp3", options=OutputOptions())
    with pytest.raises(NoAudioStream):
        engine.convert(media("mp4_noaudio"), tmp_path / "none.mp3", options=OutputOptions())
    with pytest.raises(CorruptMedia):
        engine.convert(media("truncated_faststart_mp4", duration=6.0), tmp_path / "bad.mp3", options=OutputOptions())
    assert len(conversions_started(ffmpeg_processes)) == 2
    assert all(process.returncode is not None for process in ffmpeg_processes)
    pids = {process.pid for process in ffmpeg_processes}
    assert not pids & set(children_of_this_process())  # neither running nor left as zombies


def test_timeout_kills_the_ffmpeg_process_group(media, tmp_path, ffmpeg_processes):
    source = media("flac", duration=300.0)  # takes seconds to convert
    info = engine.probe(source)
    with pytest.raises(ConversionTimeout) as raised:
        engine.convert(source, tmp_path / "out.mp3", options=OutputOptions(), info=info, timeout=0.01)
    assert raised.value.code == "timeout"
    [process] = conversions_started(ffmpeg_processes)
    assert process.returncode == -signal.SIGKILL  # killed mid-run, not finished
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # start_new_session made it a group leader; the whole group is gone
    assert process.pid not in children_of_this_process()


def test_cancel_from_the_progress_callback_kills_ffmpeg(media, tmp_path, ffmpeg_processes):
    source = media("flac", duration=300.0)  # takes seconds to convert: still running at the first report
    info = engine.probe(source)
    calls: list[float] = []

    def cancel(percent: float) -> None:
        calls.append(percent)
        raise ConversionCancelled()

    with pytest.raises(ConversionCancelled) as raised:
        engine.convert(source, tmp_path / "out.mp3", options=OutputOptions(), info=info, on_progress=cancel)
    assert raised.value.code == "cancelled"
    assert len(calls) == 1 and calls[0] < 100.0  # stopped at the first report, not at the end
    [process] = conversions_started(ffmpeg_processes)
    assert process.returncode == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)
    assert process.pid not in children_of_this_process()
    # The partial MP3 stays at the target (the service converts inside a TemporaryDirectory that goes with it).


def test_cancel_removes_the_cover_picture(media, tmp_path, ffmpeg_processes):
    target = tmp_path / "out.mp3"
    cover = tmp_path / "out.mp3.cover.jpg"
    cover_existed: list[bool] = []

    def cancel(percent: float) -> None:
        cover_existed.append(cover.exists())
        raise ConversionCancelled()

    with pytest.raises(ConversionCancelled):
        engine.convert(media("mp4_aac"), target, options=OutputOptions(cover=True), on_progress=cancel)
    assert cover_existed == [True]  # the picture was there while ffmpeg ran...
    assert not cover.exists()  # ...and is gone after the cancel
    assert len(conversions_started(ffmpeg_processes)) == 1
    assert all(process.returncode is not None for process in ffmpeg_processes)
    assert not {process.pid for process in ffmpeg_processes} & set(children_of_this_process())

