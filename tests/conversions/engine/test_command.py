"""conversions.engine.command: the ffmpeg argument lists, and that nothing a user sends can become an option."""


import pytest

from conversions import engine
from conversions.engine import (
    AudioStream,
    NoAudioStream,
    OutputOptions,
)
from tests.conversions.engine.helpers import STEREO, info_with


# --- command line safety ---------------------------------------------------------------------------------------
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

