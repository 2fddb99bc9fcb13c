"""What every shared storage promises (conversions/storage/base.py and the Django Storage API), run against both
GridFS and S3 (the `backend` fixture)."""

from __future__ import annotations

import os
from datetime import timezone as dt_timezone

import pytest
from django.core.files import File
from django.core.files.base import ContentFile

from tests.conversions.storage.helpers import (
    MB,
    Backend,
    NoReadAllBytesIO,
    SourceStreamBroke,
    broken_source,
    read_in_pieces,
)


def test_save_and_open_round_trip_a_file_of_several_pieces(backend: Backend) -> None:
    piece = backend.piece_size
    data = os.urandom(3 * piece + 12345)

    name = backend.storage.save("sources/clip.mp4", ContentFile(data))

    assert name == "sources/clip.mp4"
    with backend.storage.open(name) as stored:
        assert stored.size == len(data)
        # A read size unaligned with the piece size crosses piece borders.
        assert read_in_pieces(stored, 100_000) == data
        stored.seek(piece - 10)
        assert stored.read(20) == data[piece - 10 : piece + 10]
        stored.seek(5)
        assert stored.read(5) == data[5:10]


def test_save_records_content_type_for_the_download_view(backend: Backend) -> None:
    name = backend.storage.save("mp3/song.mp3", ContentFile(b"ID3"))

    with backend.storage.open(name) as stored:
        assert stored.content_type == "audio/mpeg"


def test_opened_file_can_be_reopened_after_close(backend: Backend) -> None:
    name = backend.storage.save("mp3/song.mp3", ContentFile(b"abc"))
    stored = backend.storage.open(name)
    assert stored.read(1) == b"a"
    stored.close()

    # FieldFile.open() does this when a closed file is opened again.
    stored.open("rb")

    assert stored.read() == b"abc"


def test_save_picks_a_new_name_when_taken(backend: Backend) -> None:
    first = backend.storage.save("mp3/song.mp3", ContentFile(b"one"))
    second = backend.storage.save("mp3/song.mp3", ContentFile(b"two"))

    assert first == "mp3/song.mp3"
    assert second != first
    assert second.startswith("mp3/song_") and second.endswith(".mp3")
    with backend.storage.open(first) as stored:
        assert stored.read() == b"one"


def test_exists_size_and_delete(backend: Backend) -> None:
    data = os.urandom(200_000)
    name = backend.storage.save("mp3/song.mp3", ContentFile(data))

    assert backend.storage.exists(name)
    assert backend.storage.size(name) == len(data)

    backend.storage.delete(name)

    assert not backend.storage.exists(name)
    assert backend.leftovers() == []
    # Deleting what is not there is not an error.
    backend.storage.delete(name)
    backend.storage.delete("never/stored.mp3")


def test_failing_source_stream_leaves_nothing_behind(backend: Backend) -> None:
    pieces_before_failure: list[int] = []
    source = broken_source(
        size=5 * backend.piece_size,
        good_bytes=2 * backend.piece_size,
        on_failure=lambda: pieces_before_failure.append(backend.unfinished_pieces()),
    )

    with pytest.raises(SourceStreamBroke):
        backend.storage.save("sources/broken.mp4", source)

    # The failure came mid-upload, with pieces already on the server, and they are gone again.
    assert pieces_before_failure == [2]
    assert backend.leftovers() == []
    assert not backend.storage.exists("sources/broken.mp4")


def test_opening_a_missing_file_raises_file_not_found(backend: Backend) -> None:
    with pytest.raises(FileNotFoundError):
        backend.storage.open("never/stored.mp3")
    with pytest.raises(FileNotFoundError):
        backend.storage.size("never/stored.mp3")


def test_save_streams_pieces_instead_of_reading_the_whole_source(backend: Backend) -> None:
    data = os.urandom(max(8 * MB, 3 * backend.piece_size))
    source = NoReadAllBytesIO(data)

    name = backend.storage.save("sources/big.mp4", File(source, name="big.mp4"))

    assert 0 < source.largest_read <= backend.piece_size
    assert backend.storage.size(name) == len(data)


def test_modified_time_is_aware_utc(backend: Backend) -> None:
    name = backend.storage.save("mp3/song.mp3", ContentFile(b"abc"))

    modified = backend.storage.get_modified_time(name)

    assert modified.tzinfo is not None
    assert modified.utcoffset() == dt_timezone.utc.utcoffset(None)


def test_listdir_treats_slashes_as_folders(backend: Backend) -> None:
    for name in ("mp3/a.mp3", "mp3/b.mp3", "mp3/2024/c.mp3", "sources/d.mp4"):
        backend.storage.save(name, ContentFile(b"x"))

    assert backend.storage.listdir("mp3") == (["2024"], ["a.mp3", "b.mp3"])
    assert backend.storage.listdir("") == (["mp3", "sources"], [])


def test_url_is_not_available(backend: Backend) -> None:
    with pytest.raises(NotImplementedError):
        backend.storage.url("mp3/song.mp3")


def test_ping_reports_a_reachable_server(backend: Backend) -> None:
    assert backend.storage.ping() is True


