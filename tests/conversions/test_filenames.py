"""conversions.filenames: the display name kept for an upload and the names its files get."""

import uuid

import pytest

from conversions.filenames import clean_filename, download_name, output_name, source_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("clip.mp4", "clip.mp4"),
        ("../../etc/passwd.mp4", "passwd.mp4"),
        ("/abs/path/video.mkv", "video.mkv"),
        ("C:\\Users\\me\\Videos\\holiday.mov", "holiday.mov"),
        ("", "upload"),
        ("\n\t", "upload"),
        ("Ünïcødé 日本.mp4", "Ünïcødé 日本.mp4"),
        ("e\u0301te\u0301.mp4", "\u00e9t\u00e9.mp4"),  # NFC
    ],
)
def test_clean_filename(name, expected):
    assert clean_filename(name) == expected


def test_clean_filename_removes_control_characters():
    cleaned = clean_filename("evil\r\nSubject: injected\x00\x1b[31m.mp4")
    assert not any(ord(char) < 32 or ord(char) == 127 for char in cleaned)
    assert cleaned.startswith("evil") and cleaned.endswith(".mp4")
    assert "Subject: injected" in cleaned


def test_clean_filename_truncates_long_unicode_names_keeping_the_extension():
    name = "日本語のとても長い名前" * 30 + ".mp4"
    assert len(name) > 300
    cleaned = clean_filename(name)
    assert len(cleaned) == 255
    assert cleaned.endswith(".mp4")
    assert cleaned[:-4] == name[:251]


def test_stored_names_never_hold_the_users_file_name():
    job = uuid.uuid4()
    assert source_name(job) == f"sources/{job}"
    assert output_name(job, 3) == f"mp3/{job}-3.mp3"  # one name per attempt


@pytest.mark.parametrize(
    ("original", "expected"),
    [("holiday.mp4", "holiday.mp3"), ("C:\\Videos\\talk.final.mkv", "talk.final.mp3"), ("clip", "clip.mp3"), ("", "audio.mp3")],
)
def test_download_name_is_the_stem_with_mp3(original, expected):
    assert download_name(original) == expected


def test_track_names_are_numbered_and_safe_on_any_system():
    from conversions.filenames import track_download_name, track_name

    assert track_name("abc", 2, 7) == "tracks/abc-2-007.mp3"
    assert track_download_name(3, "Intro", 12) == "03 - Intro.mp3"
    assert track_download_name(3, "Intro", 120) == "003 - Intro.mp3"
    assert track_download_name(1, 'a/b\\c:d*e?f"g<h>i|j\x00k', 3) == "01 - a b c d e f g h i j k.mp3"
    assert track_download_name(1, "../..", 3) == "01.mp3"  # nothing left of it: the number alone
    assert track_download_name(1, "x" * 300, 3) == f"01 - {'x' * 120}.mp3"
