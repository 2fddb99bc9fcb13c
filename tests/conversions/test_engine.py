"""conversions.engine with the real ffmpeg on generated media: probe, convert, options, command lines, processes."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conversions import engine
from conversions.engine import (
    AudioStream,
    ConversionTimeout,
    CorruptMedia,
    MediaInfo,
    NoAudioStream,
    OutputOptions,
    UnsupportedMedia,
)
from tests.media import SPECS, decoded_duration, probe_output

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


@pytest.fixture
def ffmpeg_processes(monkeypatch):
    """Every process the engine starts during the test, recorded (the processes themselves are real)."""
    started: list[subprocess.Popen] = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(engine.subprocess, "Popen", RecordingPopen)
    return started


def conversions_started(processes) -> list[subprocess.Popen]:
    return [process for process in processes if "-progress" in process.args]


# --- probe() ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", AUDIO_SPECS + ["truncated_faststart_mp4"])
def test_probe_reads_audio_streams_and_duration(media, name):
    spec = SPECS[name]
    info = engine.probe(media(name))
    assert info.has_audio
    assert len(info.audio_streams) == len(spec.audio)
    assert info.duration == pytest.approx(spec.duration, abs=0.15)
    assert info.format_name == spec.format
    assert info.has_video == (spec.video_codec is not None)
    for stream, track in zip(info.audio_streams, spec.audio, strict=True):
        assert stream.codec == track.codec
        assert stream.sample_rate == track.sample_rate
        assert stream.channels == track.channels
    chosen = info.default_audio
    assert (chosen.codec, chosen.channels) == (default_track(spec).codec, default_track(spec).channels)


@pytest.mark.parametrize("name", VIDEO_ONLY_SPECS)
def test_probe_of_video_without_audio(media, name):
    info = engine.probe(media(name))
    assert not info.has_audio
    assert info.default_audio is None
    assert info.has_video
    assert info.duration == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("name", UNREADABLE_SPECS)
def test_probe_refuses_non_media_images_and_text(media, name):
    with pytest.raises(UnsupportedMedia) as raised:
        engine.probe(media(name))
    assert raised.value.code == "unsupported_media"
    assert len(raised.value.message) > 20


def test_unreadable_specs_are_the_expected_ones():
    # Guards the parametrisation above: a new spec must land in exactly one group.
    assert set(UNREADABLE_SPECS) == {"png", "truncated_mp4", "text", "text_large", "random_bytes_mp4", "empty_mp4"}
    assert VIDEO_ONLY_SPECS == ["mp4_noaudio"]


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


# --- command line safety ---------------------------------------------------------------------------------------
def info_with(*streams: AudioStream) -> MediaInfo:
    return MediaInfo(format_name="matroska,webm", duration=2.0, audio_streams=streams, has_video=True)


STEREO = AudioStream(index=0, codec="aac", sample_rate=44100, channels=2, default=True)


def test_build_command_puts_nothing_from_the_user_before_the_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = engine.build_command("-i evil.mp4", "-y out.mp3", info=info_with(STEREO), options=OutputOptions())
    position = command.index("-i")
    assert command[0] == engine.ffmpeg_exe()
    assert not any("evil" in arg or "out.mp3" in arg or tmp_path.name in arg for arg in command[1:position])
    assert "-nostdin" in command[1:position]
    assert command[position + 1] == f"file:{tmp_path / '-i evil.mp4'}"
    assert command[-1] == f"file:{tmp_path / '-y out.mp3'}"
    assert command.count("-i") == 1
    assert not any("evil" in arg or "out.mp3" in arg for arg in command[:position + 1] + command[position + 2:-1])


def test_build_command_options_track_and_downmix():
    first = AudioStream(index=0, codec="aac", sample_rate=44100, channels=2, default=False)
    second_default = AudioStream(index=1, codec="ac3", sample_rate=48000, channels=6, default=True)
    command = engine.build_command(
        "/in.mkv", "/out.mp3", info=info_with(first, second_default),
        options=OutputOptions(bitrate_kbps=192),
    )
    assert command[command.index("-map") + 1] == "0:a:1"
    assert command[command.index("-b:a") + 1] == "192k"
    assert "-q:a" not in command
    assert command[command.index("-ac") + 1] == "2"
    assert command[command.index("-c:a") + 1] == "libmp3lame"

    vbr = engine.build_command("/in.mkv", "/out.mp3", info=info_with(STEREO), options=OutputOptions(vbr_quality=5))
    assert vbr[vbr.index("-q:a") + 1] == "5"
    assert "-b:a" not in vbr and "-ac" not in vbr
    default = engine.build_command("/in.mkv", "/out.mp3", info=info_with(STEREO), options=OutputOptions())
    assert default[default.index("-q:a") + 1] == "2"

    with pytest.raises(NoAudioStream):
        engine.build_command("/in.mkv", "/out.mp3", info=info_with(), options=OutputOptions())


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


# --- OutputOptions ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"bitrate_kbps": 128, "vbr_quality": 2},
        {"bitrate_kbps": 100},
        {"bitrate_kbps": 0},
        {"bitrate_kbps": 1000},
        {"vbr_quality": -1},
        {"vbr_quality": 10},
    ],
)
def test_output_options_validation(kwargs):
    with pytest.raises(ValueError):
        OutputOptions(**kwargs)


@pytest.mark.parametrize(
    ("options", "stored"),
    [
        (OutputOptions(), {}),  # defaults are not stored: an MP3 source with no options is stream-copied
        (OutputOptions(vbr_quality=0), {"vbr_quality": 0}),
        (OutputOptions(vbr_quality=9), {"vbr_quality": 9}),
        (OutputOptions(bitrate_kbps=32), {"bitrate_kbps": 32}),
        (OutputOptions(bitrate_kbps=320), {"bitrate_kbps": 320}),
    ],
)
def test_output_options_round_trip(options, stored):
    assert options.as_dict() == stored
    restored = OutputOptions.from_dict(options.as_dict())
    assert restored.as_dict() == stored
    assert engine.build_command("/a", "/b", info=info_with(STEREO), options=restored) == engine.build_command(
        "/a", "/b", info=info_with(STEREO), options=options
    )


def test_output_options_from_dict_ignores_unknown_and_empty_keys():
    restored = OutputOptions.from_dict({"bitrate_kbps": None, "vbr_quality": 4, "other": "x"})
    assert restored == OutputOptions(vbr_quality=4)
    assert OutputOptions.from_dict({}) == OutputOptions()
    with pytest.raises(ValueError):
        OutputOptions.from_dict({"bitrate_kbps": 100})


# --- parse_probe_output ----------------------------------------------------------------------------------------
SURROUND_MKV = """\
Input #0, matroska,webm, from 'file:/tmp/surround.mkv':
  Metadata:
    ENCODER         : Lavf61.7.100
  Duration: 00:01:02.50, start: 0.000000, bitrate: 245 kb/s
  Stream #0:0: Video: h264 (High), yuv420p(progressive), 160x120 [SAR 1:1 DAR 4:3], 10 fps, 10 tbr, 1k tbn (default)
      Metadata:
        ENCODER         : Lavc61.19.100 libx264
        DURATION        : 00:01:02.500000000
  Stream #0:1(eng): Audio: ac3, 48000 Hz, 5.1(side), fltp, 192 kb/s (default)
      Metadata:
        DURATION        : 00:01:02.496000000
At least one output file must be specified
"""

PCM_SIX_CHANNELS = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/studio.mov':
  Duration: 00:00:10.00, start: 0.000000, bitrate: 6913 kb/s
  Stream #0:0[0x1](und): Audio: pcm_s24le (in24 / 0x34326E69), 48000 Hz, 6 channels, s32 (24 bit), 6912 kb/s (default)
      Metadata:
        handler_name    : SoundHandler
At least one output file must be specified
"""

MP3_WITH_COVER = """\
[mp3 @ 0x55d0c1a3e740] Estimating duration from bitrate, this may be inaccurate
Input #0, mp3, from 'file:/tmp/song.mp3':
  Metadata:
    title           : Song
    artist          : Someone
  Duration: 00:03:25.47, start: 0.025057, bitrate: 192 kb/s
  Stream #0:0: Audio: mp3 (mp3float), 44100 Hz, stereo, fltp, 192 kb/s
      Metadata:
        encoder         : LAME3.100
  Stream #0:1: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 500x500 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)
      Metadata:
        comment         : Cover (front)
At least one output file must be specified
"""

COVER_ONLY = """\
Input #0, mp3, from 'file:/tmp/cover.mp3':
  Duration: N/A, start: 0.000000, bitrate: N/A
  Stream #0:0: Video: png, rgb24(pc), 300x300, 90k tbr, 90k tbn (attached pic)
At least one output file must be specified
"""

LIVE_TS_NO_DURATION = """\
Input #0, mpegts, from 'file:/tmp/live.ts':
  Duration: N/A, start: 1.400000, bitrate: N/A
  Program 1
    Metadata:
      service_name    : Service01
  Stream #0:0[0x100]: Video: h264 (Constrained Baseline) ([27][0][0][0] / 0x001B), yuv420p(progressive), 160x120, 10 fps, 10 tbr, 90k tbn
  Stream #0:1[0x101]: Audio: aac (LC) ([15][0][0][0] / 0x000F), 22050 Hz, mono, fltp, 31 kb/s
At least one output file must be specified
"""

SILENT_MP4 = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/silent.mp4':
  Duration: 00:00:02.00, start: 0.000000, bitrate: 120 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 160x120, 118 kb/s, 10 fps (default)
At least one output file must be specified
"""

STILL_IMAGE = """\
Input #0, png_pipe, from 'file:/tmp/image.png':
  Duration: N/A, bitrate: N/A
  Stream #0:0: Video: png, rgb24(pc), 160x120, 25 fps, 25 tbr, 25 tbn
"""

TEXT_AS_ANSI = """\
Input #0, tty, from 'file:/tmp/long_notes.txt':
  Duration: 00:00:00.36, bitrate: 1 kb/s
  Stream #0:0: Video: ansi, pal8, 640x400, 25 fps, 25 tbr, 25 tbn
"""

NOT_MEDIA = (
    "[in#0 @ 0x5583] Error opening input: Invalid data found when processing input\n"
    "file:/tmp/notes.txt: Invalid data found when processing input\n"
)


def test_parse_surround_layout():
    info = engine.parse_probe_output(SURROUND_MKV)
    assert info.format_name == "matroska,webm"
    assert info.duration == pytest.approx(62.5)
    assert info.has_video
    assert info.audio_streams == (AudioStream(index=0, codec="ac3", sample_rate=48000, channels=6, default=True),)


def test_parse_channel_count_written_out():
    info = engine.parse_probe_output(PCM_SIX_CHANNELS)
    assert info.default_audio == AudioStream(index=0, codec="pcm_s24le", sample_rate=48000, channels=6, default=True)
    assert not info.has_video
    assert info.duration == pytest.approx(10.0)


def test_parse_cover_art_is_not_video():
    info = engine.parse_probe_output(MP3_WITH_COVER)
    assert info.format_name == "mp3"
    assert info.duration == pytest.approx(205.47)
    assert not info.has_video
    assert [(s.codec, s.channels, s.sample_rate) for s in info.audio_streams] == [("mp3", 2, 44100)]


def test_parse_cover_art_alone_is_unsupported():
    with pytest.raises(UnsupportedMedia):
        engine.parse_probe_output(COVER_ONLY)


def test_parse_duration_not_available():
    info = engine.parse_probe_output(LIVE_TS_NO_DURATION)
    assert info.duration is None
    assert info.has_video
    assert info.audio_streams == (AudioStream(index=0, codec="aac", sample_rate=22050, channels=1, default=False),)
    assert info.default_audio.index == 0  # no default flag: the first stream


def test_parse_video_without_audio():
    info = engine.parse_probe_output(SILENT_MP4)
    assert info.has_video and not info.has_audio
    assert info.duration == pytest.approx(2.0)


@pytest.mark.parametrize("stderr", [STILL_IMAGE, TEXT_AS_ANSI, NOT_MEDIA, ""])
def test_parse_images_text_and_garbage_are_unsupported(stderr):
    with pytest.raises(UnsupportedMedia) as raised:
        engine.parse_probe_output(stderr)
    assert raised.value.detail == stderr[-4000:]
