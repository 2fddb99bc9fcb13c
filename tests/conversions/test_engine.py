"""conversions.engine with the real ffmpeg on generated media: probe, convert, options, command lines, processes.

Every output option is checked on the MP3 itself with ffmpeg's own view of it (tests.media.probe_output for
codec, bitrate, sample rate, channels, tags and the attached picture; decoded_duration for length; the ebur128
filter for loudness), never by looking only at the command the engine built. Inputs media.SPECS lacks (a 96 kHz
WAV, a quiet tone, large videos, an mp4 whose audio codec ffmpeg cannot identify) are made here with ffmpeg.
"""

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conversions import engine
from conversions.engine import (
    AudioStream,
    ConversionCancelled,
    ConversionTimeout,
    CorruptMedia,
    InvalidOption,
    MediaInfo,
    NoAudioStream,
    OutputOptions,
    TrimOutOfRange,
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

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
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


# --- output options, each checked on the output with ffmpeg's own probe ---------------------------------------
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


@pytest.mark.parametrize("bitrate", [32, 192])
def test_cbr_bitrate_low_and_middle(media, tmp_path, bitrate):
    # 128 and 320 are covered above; these ends show the value is passed through, not a fixed preset.
    target = tmp_path / "out.mp3"
    result = engine.convert(media("wav"), target, options=OutputOptions(bitrate_kbps=bitrate))
    assert audio_of(target)["bitrate_kbps"] == bitrate
    assert not result.copied
    assert b"Info" in target.read_bytes()[:8192] and b"Xing" not in target.read_bytes()[:8192]


@pytest.mark.parametrize("quality", [0, 9])
def test_vbr_quality_writes_a_vbr_header(media, tmp_path, quality):
    # vbr_quality=0 is a real choice (not "unset"): it must still give VBR, not fall back to CBR.
    target = tmp_path / "out.mp3"
    engine.convert(media("wav"), target, options=OutputOptions(vbr_quality=quality))
    head = target.read_bytes()[:8192]
    assert b"Xing" in head and b"Info" not in head


# sample_rate ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [22050, 48000])
def test_sample_rate_is_applied(media, tmp_path, rate):
    target = tmp_path / "out.mp3"
    engine.convert(media("wav"), target, options=OutputOptions(sample_rate=rate))
    assert audio_of(target)["sample_rate"] == rate
    assert decoded_duration(target) == pytest.approx(2.0, abs=mp3_frame(rate))


@pytest.mark.parametrize(
    ("name", "rate", "channels"),
    [("wav", 44100, 2), ("opus", 48000, 2), ("3gp_aac", 22050, 1), ("mkv_ac3", 48000, 2)],
)
def test_default_keeps_the_source_sample_rate_and_channels(media, tmp_path, name, rate, channels):
    # Stereo stays stereo, mono stays mono, 5.1 becomes stereo; 22050 Hz is not "upgraded" to 44100.
    assert SPECS[name].audio[0].sample_rate == rate
    target = tmp_path / "out.mp3"
    engine.convert(media(name), target, options=OutputOptions())
    stream = audio_of(target)
    assert (stream["sample_rate"], stream["channels"]) == (rate, channels)


def test_a_sample_rate_mp3_cannot_carry_becomes_48000(tmp_path):
    source = tone(tmp_path / "hires.wav", rate=96000)
    assert engine.probe(source).default_audio.sample_rate == 96000
    target = tmp_path / "out.mp3"
    engine.convert(source, target, options=OutputOptions())
    assert audio_of(target)["sample_rate"] == 48000
    assert decoded_duration(target) == pytest.approx(2.0, abs=mp3_frame(48000))


# channels -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "source_channels", "channels"), [("wav", 2, 1), ("3gp_aac", 1, 2)])
def test_channels_are_applied(media, tmp_path, name, source_channels, channels):
    assert SPECS[name].audio[0].channels == source_channels
    target = tmp_path / "out.mp3"
    engine.convert(media(name), target, options=OutputOptions(channels=channels))
    assert audio_of(target)["channels"] == channels


# trim -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "start", "end", "expected"),
    [
        ("wav", 1.0, None, 3.0),  # start only
        ("wav", None, 2.5, 2.5),  # end only
        ("wav", 0.25, 1.75, 1.5),  # both, with decimals
        ("mp4_aac", 1.5, 3.25, 1.75),  # a compressed source seeks just as precisely
        ("opus", 0.75, None, 3.25),
        ("wav", None, 4.3, 4.0),  # an end a little past the end (container rounding) is clamped
    ],
)
def test_trim_keeps_exactly_the_range(media, tmp_path, name, start, end, expected):
    target = tmp_path / "out.mp3"
    result = engine.convert(media(name, duration=4.0), target, options=OutputOptions(trim_start=start, trim_end=end))
    rate = audio_of(target)["sample_rate"]
    assert decoded_duration(target) == pytest.approx(expected, abs=mp3_frame(rate))
    assert result.duration == pytest.approx(expected, abs=0.05)
    assert not result.copied


def test_trimmed_progress_is_relative_to_the_range_and_ends_at_100(media, tmp_path):
    reported: list[float] = []
    options = OutputOptions(trim_start=2.0, trim_end=14.0)  # 12 s of a 20 s file
    engine.convert(media("wav", duration=20.0), tmp_path / "out.mp3", options=options, on_progress=reported.append)
    assert len(reported) >= 2 and reported[-1] == 100.0
    # ffmpeg's own last report (before the final 100) covers the whole range: measured against the full 20 s
    # it would be at most 60 %.
    assert reported[-2] >= 95.0
    assert all(0.0 <= value <= 100.0 for value in reported)
    assert reported == sorted(reported)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        (OutputOptions(trim_start=2.0), "trim_start"),  # exactly the duration: nothing left
        (OutputOptions(trim_start=7.5), "trim_start"),
        (OutputOptions(trim_end=2.6), "trim_end"),  # beyond the 0.5 s allowance
        (OutputOptions(trim_start=1.0, trim_end=30.0), "trim_end"),
    ],
)
def test_trim_out_of_range(media, tmp_path, ffmpeg_processes, options, name):
    target = tmp_path / "out.mp3"
    with pytest.raises(TrimOutOfRange) as raised:
        engine.convert(media("wav"), target, options=options)
    assert raised.value.code == "trim_out_of_range"
    assert name in raised.value.message
    assert "2.00 s" in raised.value.message  # the file's duration, so the user can pick a valid range
    assert f"{getattr(options, name):g} s" in raised.value.message
    assert conversions_started(ffmpeg_processes) == []  # refused before any conversion started
    assert not target.exists()


# normalize ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quiet_source(tmp_path_factory) -> Path:
    """4 s of sine at volume 0.05 (about -48 LUFS) at 48 kHz, so "the source's rate" is not the 44100 fallback."""
    return tone(tmp_path_factory.mktemp("quiet") / "quiet.wav", rate=48000, seconds=4.0, volume=0.05)


def test_normalize_brings_a_quiet_source_to_minus_16_lufs(quiet_source, tmp_path):
    plain, normalized = tmp_path / "plain.mp3", tmp_path / "normalized.mp3"
    engine.convert(quiet_source, plain, options=OutputOptions())
    engine.convert(quiet_source, normalized, options=OutputOptions(normalize=True))
    assert integrated_loudness(plain) < -40.0  # without normalize the level is left alone
    assert integrated_loudness(normalized) == pytest.approx(-16.0, abs=1.5)
    # loudnorm works at 192 kHz; the output goes back to the source's rate.
    assert audio_of(normalized)["sample_rate"] == audio_of(plain)["sample_rate"] == 48000
    assert decoded_duration(normalized) == pytest.approx(4.0, abs=mp3_frame(48000))


def test_normalize_with_an_explicit_sample_rate(quiet_source, tmp_path):
    target = tmp_path / "out.mp3"
    engine.convert(quiet_source, target, options=OutputOptions(normalize=True, sample_rate=22050, channels=1))
    assert (audio_of(target)["sample_rate"], audio_of(target)["channels"]) == (22050, 1)
    assert integrated_loudness(target) == pytest.approx(-16.0, abs=1.5)


# ID3 tags -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tags",
    [
        {"title": "My Song", "artist": "The Band", "album": "First Album"},
        {"title": "Ünïcødé — 日本語の歌 🎵", "artist": "Björk & Sigur Rós", "album": "Ελληνικά"},
        {"title": "-i evil", "artist": "-y -f null", "album": "a=b;c"},  # stored literally, never parsed
    ],
)
def test_id3_tags_are_written(media, tmp_path, tags):
    target = tmp_path / "out.mp3"
    engine.convert(media("mp4_aac"), target, options=OutputOptions(**tags))
    written = probe_output(target)["tags"]
    assert {key: written.get(key) for key in tags} == tags
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mp3"]  # "-y -f null" made no other file


def test_no_title_unless_given(media, tmp_path):
    # The source's own title ("Test Clip") is dropped, and the engine invents none: the service fills the default.
    assert probe_output(media("mp4_aac"))["tags"]["title"] == SPECS["mp4_aac"].title
    target = tmp_path / "out.mp3"
    engine.convert(media("mp4_aac"), target, options=OutputOptions(artist="Someone"))
    tags = probe_output(target)["tags"]
    assert tags.get("artist") == "Someone"
    assert "title" not in tags and "album" not in tags


# cover ----------------------------------------------------------------------------------------------------------
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


def test_cover_from_a_small_video_is_not_upscaled(media, tmp_path):
    target = tmp_path / "out.mp3"
    result = engine.convert(media("mp4_aac"), target, options=OutputOptions(cover=True))
    picture = cover_of(target)
    assert (picture["width"], picture["height"]) == (160, 120)
    assert audio_of(target)["codec"] == "mp3"
    assert result.duration == pytest.approx(2.0, abs=0.1)  # the picture does not change the audio's length
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mp3"]  # no cover .jpg left behind


@pytest.mark.parametrize(("size", "expected"), [("1280x720", (600, 338)), ("480x960", (300, 600))])
def test_cover_from_a_large_video_fits_600_pixels(tmp_path, size, expected):
    (tmp_path / "source").mkdir()
    source = video_with_audio(tmp_path / "source" / "big.mp4", size)
    output = tmp_path / "output"
    output.mkdir()
    engine.convert(source, output / "out.mp3", options=OutputOptions(cover=True))
    picture = cover_of(output / "out.mp3")
    width, height = picture["width"], picture["height"]
    assert max(width, height) == 600
    assert width == pytest.approx(expected[0], abs=2) and height == pytest.approx(expected[1], abs=2)  # aspect kept
    assert [path.name for path in output.iterdir()] == ["out.mp3"]


@pytest.mark.parametrize("name", ["wav", "mp3"])
def test_cover_for_audio_only_sources_is_skipped(media, tmp_path, name):
    target = tmp_path / "out.mp3"
    engine.convert(media(name), target, options=OutputOptions(cover=True))
    assert probe_output(target)["video"] == []
    assert decoded_duration(target) == pytest.approx(2.0, abs=0.1)
    assert [path.name for path in tmp_path.iterdir()] == ["out.mp3"]


# audio_track ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("track", "channels"), [(0, 2), (1, 1)])
def test_audio_track_picks_the_stream(media, tmp_path, track, channels):
    # a:0 is 440 Hz stereo (not default), a:1 880 Hz mono (default): track 0 must override the default flag.
    target = tmp_path / "out.mp3"
    engine.convert(media("mkv_two_tracks"), target, options=OutputOptions(audio_track=track))
    assert audio_of(target)["channels"] == channels


@pytest.mark.parametrize(
    ("name", "track", "words"), [("mkv_two_tracks", 2, "2 audio tracks"), ("wav", 1, "1 audio track:")]
)
def test_audio_track_that_does_not_exist(media, tmp_path, ffmpeg_processes, name, track, words):
    target = tmp_path / "out.mp3"
    with pytest.raises(InvalidOption) as raised:
        engine.convert(media(name), target, options=OutputOptions(audio_track=track))
    assert raised.value.code == "invalid_option"
    assert raised.value.field == "audio_track"
    assert words in raised.value.message
    assert conversions_started(ffmpeg_processes) == []
    assert not target.exists()


# stream copy ----------------------------------------------------------------------------------------------------
def test_mp3_without_audio_options_is_copied(media, tmp_path):
    source = media("mp3")
    target = tmp_path / "out.mp3"
    result = engine.convert(source, target, options=OutputOptions())
    assert result.copied
    assert audio_of(target)["bitrate_kbps"] == audio_of(source)["bitrate_kbps"] == 64
    assert audio_of(target)["sample_rate"] == audio_of(source)["sample_rate"]
    assert decoded_duration(target) == pytest.approx(decoded_duration(source), abs=0.001)
    assert "title" not in probe_output(target)["tags"]  # copying the audio does not copy the source's tags


def test_mp3_with_only_tags_and_cover_is_still_copied(media, tmp_path):
    target = tmp_path / "out.mp3"
    options = OutputOptions(title="New", artist="Someone", album="Else", cover=True)
    result = engine.convert(media("mp3"), target, options=options)
    assert result.copied
    assert audio_of(target)["bitrate_kbps"] == 64
    tags = probe_output(target)["tags"]
    assert (tags.get("title"), tags.get("artist"), tags.get("album")) == ("New", "Someone", "Else")


@pytest.mark.parametrize(
    "options",
    [
        OutputOptions(bitrate_kbps=64),  # even the source's own bitrate: the user asked for CBR 64
        OutputOptions(vbr_quality=2),
        OutputOptions(sample_rate=44100),
        OutputOptions(channels=2),
        OutputOptions(trim_start=0.5),
        OutputOptions(trim_end=1.5),
        OutputOptions(normalize=True),
    ],
    ids=["bitrate", "vbr", "sample_rate", "channels", "trim_start", "trim_end", "normalize"],
)
def test_mp3_with_audio_options_is_reencoded(media, tmp_path, options):
    target = tmp_path / "out.mp3"
    result = engine.convert(media("mp3"), target, options=options)
    assert not result.copied
    assert audio_of(target)["codec"] == "mp3"


# undecodable audio ----------------------------------------------------------------------------------------------
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


def test_undecodable_audio_is_unsupported_at_check_time(undecodable_mp4, tmp_path, ffmpeg_processes):
    info = engine.probe(undecodable_mp4)
    assert [stream.codec for stream in info.audio_streams] == ["none"]
    assert probe_output(undecodable_mp4)["audio"][0]["codec"] == "none"
    with pytest.raises(UnsupportedMedia) as raised:
        engine.convert(undecodable_mp4, tmp_path / "out.mp3", options=OutputOptions(), info=info)
    assert raised.value.code == "unsupported_media"
    assert raised.value.message == engine.UNDECODABLE_MESSAGE
    assert conversions_started(ffmpeg_processes) == []  # refused from the probe, ffmpeg never asked to convert


def test_undecodable_audio_reported_by_ffmpeg_is_unsupported_not_a_write_error(undecodable_mp4, tmp_path):
    # When the probe did not tell (here: a MediaInfo claiming AAC), ffmpeg's own failure must still be classed as
    # unsupported media. ffmpeg 9 follows "no decoder found" with "Error opening output file", which is not an
    # OSError worth retrying.
    info = MediaInfo(
        format_name="mov,mp4,m4a,3gp,3g2,mj2", duration=2.0, has_video=False,
        audio_streams=(AudioStream(index=0, codec="aac", sample_rate=44100, channels=1, default=True),),
    )
    with pytest.raises(UnsupportedMedia) as raised:
        engine.convert(undecodable_mp4, tmp_path / "out.mp3", options=OutputOptions(), info=info)
    assert raised.value.message == engine.UNDECODABLE_MESSAGE
    assert "no decoder found" in raised.value.detail.lower()


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


def test_build_command_places_every_option():
    options = OutputOptions(
        trim_start=1.5, trim_end=3.25, normalize=True, sample_rate=22050, channels=1, bitrate_kbps=96,
        title="-i evil", artist="Ünïcødé", album="a=b",
    )
    command = engine.build_command("/in.mkv", "/out.mp3", info=info_with(STEREO), options=options)
    position = command.index("-i")
    plain = engine.build_command("/in.mkv", "/out.mp3", info=info_with(STEREO), options=OutputOptions())
    # Before the input: the fixed prefix plus the seek, whose values are numbers formatted by the engine.
    before = command[:position]
    seek = before.index("-ss")
    assert before[seek:seek + 4] == ["-ss", "1.500", "-to", "3.250"]
    assert before[:seek] + before[seek + 4:] == plain[:plain.index("-i")]
    after = command[position:]
    assert after[after.index("-filter:a") + 1] == engine.LOUDNORM_FILTER
    assert after[after.index("-ar") + 1] == "22050"
    assert after[after.index("-ac") + 1] == "1"
    assert after[after.index("-b:a") + 1] == "96k"
    assert after[after.index("-c:a") + 1] == "libmp3lame"
    metadata = [after[i + 1] for i, arg in enumerate(after) if arg == "-metadata"]
    assert metadata == ["title=-i evil", "artist=Ünïcødé", "album=a=b"]
    assert command.count("-i") == 1  # "-i evil" only ever as part of "title=-i evil"


def test_build_command_without_audio_options_adds_no_filters_or_rates():
    command = engine.build_command("/in.mkv", "/out.mp3", info=info_with(STEREO), options=OutputOptions())
    for option in ("-ss", "-to", "-filter:a", "-ac", "-metadata", "-b:a"):
        assert option not in command
    assert command[command.index("-q:a") + 1] == "2"
    assert command[command.index("-ar") + 1] == "44100"  # the source's rate, stated


def test_build_command_normalize_sets_a_sample_rate_even_when_the_source_has_none():
    unknown_rate = AudioStream(index=0, codec="aac", sample_rate=None, channels=2, default=True)
    command = engine.build_command("/a", "/b", info=info_with(unknown_rate), options=OutputOptions(normalize=True))
    assert command[command.index("-ar") + 1] == "44100"  # never loudnorm's 192 kHz
    command = engine.build_command("/a", "/b", info=info_with(unknown_rate), options=OutputOptions())
    assert "-ar" not in command


@pytest.mark.parametrize(
    ("source_rate", "output_rate"),
    [(44100, "44100"), (22050, "22050"), (96000, "48000"), (88200, "48000"), (7000, "8000")],
)
def test_build_command_sample_rate_mp3_can_carry(source_rate, output_rate):
    stream = AudioStream(index=0, codec="pcm_s24le", sample_rate=source_rate, channels=2, default=True)
    command = engine.build_command("/a", "/b", info=info_with(stream), options=OutputOptions())
    assert command[command.index("-ar") + 1] == output_rate


def test_build_command_copies_mp3_with_tags_and_cover():
    mp3 = AudioStream(index=0, codec="mp3", sample_rate=44100, channels=2, default=True)
    options = OutputOptions(title="-metadata x=y", cover=True)
    command = engine.build_command("/in.mp3", "/out.mp3", info=info_with(mp3), options=options, cover_image="/c.jpg")
    assert command[command.index("-c:a") + 1] == "copy"
    for option in ("-q:a", "-b:a", "-ar", "-ac", "-filter:a", "libmp3lame"):
        assert option not in command
    first, second = [i for i, arg in enumerate(command) if arg == "-i"]
    assert command[first + 1] == "file:/in.mp3" and command[second + 1] == "file:/c.jpg"
    assert command[command.index("-disposition:v:0") + 1] == "attached_pic"
    assert "title=-metadata x=y" in command[second:]
    assert not any("x=y" in arg or "/c.jpg" in arg for arg in command[:first])

    reencoded = engine.build_command("/in.mp3", "/out.mp3", info=info_with(mp3), options=OutputOptions(channels=1))
    assert reencoded[reencoded.index("-c:a") + 1] == "libmp3lame"

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
        {"sample_rate": 44000},
        {"sample_rate": 96000},
        {"channels": 0},
        {"channels": 6},
        {"trim_start": -0.5},
        {"trim_start": 2.0, "trim_end": 2.0},
        {"trim_start": 2.0, "trim_end": 1.5},
        {"trim_end": 0},
        {"audio_track": -1},
        {"title": "x" * 201},
    ],
)
def test_output_options_validation(kwargs):
    with pytest.raises(InvalidOption) as refused:
        OutputOptions(**kwargs)
    # It names the field at fault: the later one of two that clash.
    assert refused.value.field == list(kwargs)[-1]
    assert refused.value.field in refused.value.message


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
    with pytest.raises(InvalidOption):
        OutputOptions.from_dict({"bitrate_kbps": 100})


@pytest.mark.parametrize(
    ("options", "changes"),
    [
        (OutputOptions(), False),
        (OutputOptions(title="t", artist="a", album="b", cover=True, audio_track=1), False),
        (OutputOptions(trim_start=0), False),  # starting at 0 cuts nothing
        (OutputOptions(bitrate_kbps=128), True),
        (OutputOptions(vbr_quality=0), True),  # 0 is a choice, not "unset"
        (OutputOptions(vbr_quality=2), True),
        (OutputOptions(sample_rate=44100), True),
        (OutputOptions(channels=2), True),
        (OutputOptions(trim_start=0.5), True),
        (OutputOptions(trim_end=10), True),
        (OutputOptions(normalize=True), True),
    ],
)
def test_output_options_changes_audio(options, changes):
    assert options.changes_audio is changes

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
