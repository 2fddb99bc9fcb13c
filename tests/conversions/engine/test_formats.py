"""conversions.engine.formats: the output format is data. The command builder and the options read the row they
are given, so a format's facts (codec, muxer, rates, copyable codecs) live in the table alone."""

from dataclasses import replace

import pytest

from conversions.engine import MP3, AudioStream, InvalidOption, OutputOptions, build_command, copies_stream
from conversions.filenames import download_name, output_name
from tests.conversions.engine.helpers import STEREO, info_with

# An imaginary second row: another encoder and muxer, no extra muxer options, AAC copied as it is.
OTHER = replace(
    MP3, name="other", codec="libother", muxer="otherfmt", muxer_options=(), sample_rates=(16000, 32000),
    max_channels=1, copy_codecs=frozenset({"aac"}),
)


def arguments_after(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == flag]


def test_the_command_reads_the_encoder_muxer_and_its_options_from_the_row():
    mp3 = build_command("/in.mkv", "/out", info=info_with(STEREO), options=OutputOptions(channels=1))
    assert arguments_after(mp3, "-c:a") == ["libmp3lame"]
    assert arguments_after(mp3, "-f") == ["mp3"]
    assert arguments_after(mp3, "-id3v2_version") == ["3"]

    other = build_command(
        "/in.mkv", "/out", info=info_with(STEREO), options=OutputOptions(channels=1), output=OTHER
    )
    assert arguments_after(other, "-f") == ["otherfmt"]
    assert "-id3v2_version" not in other


def test_sample_rates_channels_and_copying_come_from_the_row():
    # 44.1 kHz stereo AAC: MP3 keeps the rate and copies nothing; the other row steps down to 32 kHz, mono, and
    # would copy the AAC stream if no option changed the audio.
    assert arguments_after(build_command("/a", "/b", info=info_with(STEREO), options=OutputOptions(normalize=True)),
                           "-ar") == ["44100"]
    other = build_command("/a", "/b", info=info_with(STEREO), options=OutputOptions(normalize=True), output=OTHER)
    assert arguments_after(other, "-ar") == ["32000"]
    assert arguments_after(other, "-ac") == ["1"]
    assert not copies_stream(info_with(STEREO), OutputOptions())
    assert copies_stream(info_with(STEREO), OutputOptions(), OTHER)
    mp3_source = AudioStream(index=0, codec="mp3", sample_rate=44100, channels=2, default=True)
    assert copies_stream(info_with(mp3_source), OutputOptions())


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [("bitrate_kbps", 100, MP3.bitrates_kbps), ("sample_rate", 44000, MP3.sample_rates)],
)
def test_the_options_allow_exactly_what_the_row_lists(option, value, allowed):
    for good in allowed:
        OutputOptions(**{option: good})
    with pytest.raises(InvalidOption) as refused:
        OutputOptions(**{option: value})
    [problem] = refused.value.problems[option]
    assert ", ".join(map(str, allowed)) in problem


def test_stored_and_downloaded_names_carry_the_rows_extension():
    assert output_name("job", 2).endswith(MP3.extension)
    assert download_name("holiday.mp4") == f"holiday{MP3.extension}"
