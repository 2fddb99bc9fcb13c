"""split=chapters in the engine: the probe's chapters, the option's rules, the one ffmpeg command that writes every
track, and `convert_tracks` on a real file with chapters."""

from pathlib import Path

import pytest

from conversions import engine
from conversions.engine import (
    MAX_CHAPTERS,
    Chapter,
    InvalidOption,
    MediaInfo,
    NoChapters,
    OutputOptions,
    OutputTooLarge,
    TooManyChapters,
    build_split_command,
    convert_tracks,
    parse_chapters,
    parse_probe_output,
    track_plan,
)
from conversions.engine.probe import AudioStream
from tests.fixtures.media import CHAPTERS
from tests.media import probe_output

PROBED = """\
Input #0, matroska,webm, from 'file:/tmp/x/source':
  Metadata:
    title           : A Lecture
  Duration: 00:00:06.02, start: 0.000000, bitrate: 243 kb/s
  Chapters:
    Chapter #0:0: start 0.000000, end 2.000000
      Metadata:
        title           : Intro: the why
    Chapter #0:1: start 2.000000, end 2.000000
      Metadata:
        title           : Empty
    Chapter #0:2: start 2.000000, end 3.500000
    Chapter #0:3: start 3.500000, end 6.000000
      Metadata:
        title           : \n
  Stream #0:0: Video: h264 (Constrained Baseline), yuv420p(progressive), 160x120, 10 fps, 10 tbr, 1k tbn (default)
    Metadata:
      title           : not a chapter's
  Stream #0:1: Audio: aac (LC), 44100 Hz, mono, fltp (default)
"""

AUDIO = (AudioStream(index=0, codec="aac", sample_rate=44100, channels=2, default=True),)


def info_with(chapters, duration=6.0) -> MediaInfo:
    return MediaInfo(format_name="matroska,webm", duration=duration, audio_streams=AUDIO, has_video=True,
                     chapters=tuple(chapters))


# --- probe ------------------------------------------------------------------------------------------------------
def test_the_probe_lists_chapters_with_their_titles_and_skips_empty_ones():
    info = parse_probe_output(PROBED)
    assert info.chapters == (
        Chapter(0.0, 2.0, "Intro: the why"),
        Chapter(2.0, 3.5, None),  # no Metadata block: untitled (and not the next stream's title)
        Chapter(3.5, 6.0, None),  # a blank title is none
    )
    assert info.chapters[1].duration == 1.5


def test_a_file_without_chapters_has_none():
    assert parse_chapters(PROBED.split("  Chapters:")[0]) == ()
    assert parse_probe_output(PROBED.replace("Chapter #", "Chapterless #")).chapters == ()


# --- options ----------------------------------------------------------------------------------------------------
def test_split_is_none_by_default_and_none_is_stored_as_no_choice():
    assert OutputOptions().split is None
    assert OutputOptions(split="none").as_dict() == {}
    assert OutputOptions(split="chapters").as_dict() == {"split": "chapters"}
    assert OutputOptions(split="chapters").changes_audio


def test_split_refuses_other_values_and_a_trim():
    with pytest.raises(InvalidOption) as bad:
        OutputOptions(split="silence")
    assert bad.value.field_errors() == {"split": ["split must be one of none, chapters."]}
    with pytest.raises(InvalidOption) as trimmed:
        OutputOptions(split="chapters", trim_start=1)
    assert "trim_start" in trimmed.value.field_errors()["split"][0]


def test_split_needs_chapters_and_at_most_the_cap():
    options = OutputOptions(split="chapters")
    with pytest.raises(NoChapters) as none:
        options.check_against(info_with([]))
    assert none.value.code == "no_chapters" and none.value.status == 422
    assert "no chapters" in none.value.message
    many = [Chapter(float(i), i + 0.5, None) for i in range(MAX_CHAPTERS + 1)]
    with pytest.raises(TooManyChapters) as too_many:
        options.check_against(info_with(many, duration=MAX_CHAPTERS + 1.0))
    assert too_many.value.status == 422 and f"at most {MAX_CHAPTERS}" in too_many.value.message
    options.check_against(info_with(many[:MAX_CHAPTERS], duration=MAX_CHAPTERS + 1.0))
    OutputOptions().check_against(info_with([]))  # a plain conversion does not care


# --- command ----------------------------------------------------------------------------------------------------
def test_the_plan_names_untitled_chapters_and_cuts_them_at_the_end_of_the_file():
    plan = track_plan(info_with([Chapter(0, 2, "Intro"), Chapter(2, 5, None), Chapter(5, 9, "Past"),
                                 Chapter(7, 8, "After the end")], duration=6.0))
    assert [(t.number, t.title, t.start, t.end) for t in plan] == [
        (1, "Intro", 0, 2), (2, "Chapter 2", 2, 5), (3, "Past", 5, 6.0),
    ]


def test_one_command_decodes_once_and_writes_each_track_with_its_tags(tmp_path):
    info = info_with([Chapter(0, 2, "Intro"), Chapter(2, 3.5, None), Chapter(3.5, 6, "End")])
    options = OutputOptions(split="chapters", title="Lecture", artist="Ada", bitrate_kbps=128, normalize=True)
    targets = [tmp_path / f"{number}.mp3" for number in (1, 2, 3)]
    command = build_split_command(tmp_path / "source", targets, info=info, options=options,
                                  cover_image=tmp_path / "cover.jpg", max_duration=600, max_output_bytes=1000)

    assert command.count("-i") == 2  # the source and the cover, each read once
    for value in ("-protocol_whitelist", "-format_whitelist"):
        assert value in command[: command.index("-i")]  # the allowlists come before the source
    graph = command[command.index("-filter_complex") + 1]
    assert graph.startswith("[0:a:0]asplit=4[part1][part2][part3][whole3];")
    assert "[part2]atrim=start=2.000:end=3.500,asetpts=PTS-STARTPTS,loudnorm=" in graph
    # Each output's options run from its `-map [trackN]` to the next output's.
    starts = [command.index(f"[track{number}]") - 1 for number in (1, 2, 3)] + [command.index("[whole3]") - 1]
    for number, target in enumerate(targets, start=1):
        output = command[starts[number - 1]:starts[number]]
        assert output[-1] == f"file:{target.resolve()}"
        assert output[2:4] == ["-map", "1:v:0"]  # the cover
        assert f"track={number}/3" in output and "album=Lecture" in output and "artist=Ada" in output
        assert output[output.index("-b:a") + 1] == "128k" and output[output.index("-fs") + 1] == "1000"
    tags = [command[i + 1] for i, arg in enumerate(command) if arg == "-metadata"]
    titles = [tag for tag in tags if tag.startswith("title=")]
    assert titles == ["title=Intro", "title=Chapter 2", "title=End"]
    assert command[-3:] == ["-f", "null", "-"]  # the whole audio, for the progress


def test_the_album_option_wins_over_the_title(tmp_path):
    command = build_split_command(tmp_path / "s", [tmp_path / "1.mp3"], info=info_with([Chapter(0, 6, "All")]),
                                  options=OutputOptions(split="chapters", title="T", album="The Album"))
    assert "album=The Album" in command and "album=T" not in command


def test_targets_must_match_the_tracks(tmp_path):
    with pytest.raises(ValueError):
        build_split_command(tmp_path / "s", [], info=info_with([Chapter(0, 6, None)]),
                            options=OutputOptions(split="chapters"))


# --- run --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chaptered(tmp_path_factory) -> Path:
    from tests.fixtures.media import make_chaptered

    return make_chaptered(tmp_path_factory.mktemp("chaptered"))


def test_convert_tracks_makes_one_tagged_mp3_per_chapter_in_one_run(chaptered, tmp_path):
    progress = []
    result = convert_tracks(chaptered, tmp_path / "out", options=OutputOptions(split="chapters", title="Notes"),
                            on_progress=progress.append)
    assert [track.number for track in result.tracks] == [1, 2, 3]
    assert [track.title for track in result.tracks] == ["Intro", "Part: Two / Middle", "Chapter 3"]
    assert progress[-1] == 100.0
    for track, (start, end, _) in zip(result.tracks, CHAPTERS, strict=True):
        assert track.start == start and track.duration == pytest.approx(end - start, abs=0.05)
        probed = probe_output(track.path)
        assert probed["duration"] == pytest.approx(end - start, abs=0.1)
        assert probed["tags"]["track"] == f"{track.number}/3" and probed["tags"]["album"] == "Notes"
        assert track.size == track.path.stat().st_size
    assert result.size == sum(track.size for track in result.tracks)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["track-001.mp3", "track-002.mp3",
                                                                           "track-003.mp3"]


def test_the_size_limit_is_on_the_tracks_together_and_leaves_none(chaptered, tmp_path):
    options = OutputOptions(split="chapters")
    unlimited = convert_tracks(chaptered, tmp_path / "unlimited", options=options)
    # Every track alone fits the limit; together they do not.
    limit = max(track.size for track in unlimited.tracks) + 1
    with pytest.raises(OutputTooLarge):
        convert_tracks(chaptered, tmp_path / "limited", options=options, max_output_bytes=limit)
    assert list((tmp_path / "limited").iterdir()) == []


def test_a_file_without_chapters_is_refused(media, tmp_path):
    with pytest.raises(engine.NoChapters):
        convert_tracks(media("mp4_aac"), tmp_path, options=OutputOptions(split="chapters"))
