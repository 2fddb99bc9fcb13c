"""conversions.engine.options: OutputOptions' rules, then every option applied by a real conversion.

Every output option is checked on the MP3 itself with ffmpeg's own view of it (tests.media.probe_output for codec,
bitrate, sample rate, channels, tags and the attached picture; decoded_duration for length; the ebur128 filter for
loudness), never by looking only at the command the engine built.
"""


import pytest

from conversions import engine
from conversions.engine import (
    AudioStream,
    InvalidOption,
    MediaInfo,
    OutputOptions,
    TrimOutOfRange,
    UnsupportedMedia,
)
from tests.conversions.engine.helpers import (
    STEREO,
    audio_of,
    conversions_started,
    cover_of,
    info_with,
    integrated_loudness,
    mp3_frame,
    tone,
    video_with_audio,
)
from tests.media import SPECS, decoded_duration, probe_output


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
    assert list(refused.value.problems) == [list(kwargs)[-1]]
    assert refused.value.field == list(kwargs)[-1]
    assert refused.value.field in refused.value.message


def test_output_options_report_every_bad_option_at_once():
    with pytest.raises(InvalidOption) as refused:
        OutputOptions(bitrate_kbps=100, sample_rate=44000, title="x" * 201, vbr_quality=10)
    problems = refused.value.problems
    assert set(problems) == {"bitrate_kbps", "sample_rate", "title", "vbr_quality"}
    assert "32, 40, 48" in problems["bitrate_kbps"][0]  # the allowed values, from the format table
    # Out of range and chosen together with a bitrate: both said.
    assert [("between 0" in message, "not both" in message) for message in problems["vbr_quality"]] == [
        (True, False), (False, True)
    ]


@pytest.mark.parametrize(
    ("name", "value", "fine"),
    [("bitrate_kbps", 192, True), ("bitrate_kbps", 191, False), ("vbr_quality", 0, True), ("vbr_quality", -1, False),
     ("trim_end", 0.0, True), ("trim_end", -2.0, False), ("title", "x" * 200, True), ("normalize", True, True)],
)
def test_one_option_on_its_own(name, value, fine):
    assert (OutputOptions.problem_with(name, value) is None) is fine


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



# --- output options, each checked on the output with ffmpeg's own probe ---------------------------------------
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


