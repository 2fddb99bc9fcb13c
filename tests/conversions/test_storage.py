"""
Tests for conversions.storage.GridFSStorage.

With MONGODB_URI set in the environment they run against that server, in a
database unique to this test session (dropped at the end). Without it they
run against mongomock's GridFS integration. The same tests run in both modes.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timezone as dt_timezone
from typing import Any

import gridfs.synchronous.grid_file as pymongo_grid_file
import mongomock
import mongomock.gridfs
import pymongo
import pytest
from django.core.files import File
from django.core.files.base import ContentFile

from conversions import storage as storage_module
from conversions.storage import GridFSStorage

REAL_MONGODB_URI = os.environ.get("MONGODB_URI")
MOCK_MONGODB_URI = "mongodb://localhost/mp3converter_test"

# Small GridFS chunks so a few MB already spans dozens of chunks.
CHUNK_SIZE = 64 * 1024
MB = 1024 * 1024


class SourceStreamBroke(Exception):
    """Stands for a client disconnecting halfway through an upload."""


class BrokenSourceFile(File):
    """A source whose chunk iterator fails after ``good_chunks`` chunks."""

    def __init__(self, *, good_chunks: int, chunk_bytes: int, on_failure: Callable[[], None] | None = None):
        super().__init__(io.BytesIO(b""), name="broken.mp4")
        self.good_chunks = good_chunks
        self.chunk_bytes = chunk_bytes
        self.on_failure = on_failure

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        for _ in range(self.good_chunks):
            yield os.urandom(self.chunk_bytes)
        if self.on_failure is not None:
            self.on_failure()
        raise SourceStreamBroke("client went away")


class NoReadAllBytesIO(io.BytesIO):
    """A source that fails the test if anyone reads it whole."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest_read = 0

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise AssertionError("the storage read the whole source into memory")
        self.largest_read = max(self.largest_read, size)
        return super().read(size)


@pytest.fixture(scope="session")
def gridfs_database_name() -> Iterator[str]:
    if REAL_MONGODB_URI is None:
        # Lets gridfs accept mongomock databases/collections. mongomock has no
        # way to undo it; it only widens isinstance checks, so real pymongo
        # objects still work for the rest of the session.
        mongomock.gridfs.enable_gridfs_integration()
        yield "mp3converter_test"
        return

    database_name = f"mp3converter_test_{uuid.uuid4().hex[:12]}"
    yield database_name
    client: pymongo.MongoClient = pymongo.MongoClient(REAL_MONGODB_URI, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(database_name)
    finally:
        client.close()


@pytest.fixture
def make_gridfs_storage(
    gridfs_database_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., GridFSStorage]]:
    # A private client cache per test: each mongomock client has its own
    # in-memory store, and clients made under a faked pid must not leak.
    clients: dict[Any, Any] = {}
    monkeypatch.setattr(storage_module, "_clients", clients)
    if REAL_MONGODB_URI is None:
        monkeypatch.setattr(storage_module, "client_factory", mongomock.MongoClient)

    created: list[GridFSStorage] = []

    def make(**overrides: Any) -> GridFSStorage:
        kwargs: dict[str, Any] = {
            "uri": REAL_MONGODB_URI or MOCK_MONGODB_URI,
            "database": gridfs_database_name,
            "chunk_size_bytes": CHUNK_SIZE,
            **overrides,
        }
        storage = GridFSStorage(**kwargs)
        created.append(storage)
        return storage

    yield make

    # On a real server the session database is shared, so empty the bucket
    # between tests.
    for storage in created:
        storage.files_collection.drop()
        storage.chunks_collection.drop()
    for client in clients.values():
        client.close()


@pytest.fixture
def gridfs_storage(make_gridfs_storage: Callable[..., GridFSStorage]) -> GridFSStorage:
    return make_gridfs_storage()


def upload_version(storage: GridFSStorage, name: str, data: bytes) -> Any:
    """Store another version of ``name`` the way a concurrent writer would."""
    grid_in = storage.bucket.open_upload_stream(name)
    grid_in.write(data)
    grid_in.close()
    return grid_in._id


def file_ids(storage: GridFSStorage, name: str) -> list[Any]:
    return [doc["_id"] for doc in storage.files_collection.find({"filename": name}, {"_id": 1})]


def read_in_pieces(file: File, piece_size: int) -> bytes:
    pieces = []
    while piece := file.read(piece_size):
        assert len(piece) <= piece_size
        pieces.append(piece)
    return b"".join(pieces)


def test_save_and_open_round_trip_a_multi_chunk_file(gridfs_storage: GridFSStorage) -> None:
    data = os.urandom(3 * MB + 12345)

    name = gridfs_storage.save("sources/clip.mp4", ContentFile(data))

    assert name == "sources/clip.mp4"
    [file_id] = file_ids(gridfs_storage, name)
    expected_chunks = -(-len(data) // CHUNK_SIZE)
    assert gridfs_storage.chunks_collection.count_documents({"files_id": file_id}) == expected_chunks

    with gridfs_storage.open(name) as stored:
        assert stored.size == len(data)
        # A piece size unaligned with the chunk size crosses chunk borders.
        assert read_in_pieces(stored, 100_000) == data
        stored.seek(CHUNK_SIZE - 10)
        assert stored.read(20) == data[CHUNK_SIZE - 10 : CHUNK_SIZE + 10]


def test_save_records_content_type_for_the_download_view(gridfs_storage: GridFSStorage) -> None:
    name = gridfs_storage.save("mp3/song.mp3", ContentFile(b"ID3"))

    with gridfs_storage.open(name) as stored:
        assert stored.content_type == "audio/mpeg"


def test_opened_file_can_be_reopened_after_close(gridfs_storage: GridFSStorage) -> None:
    name = gridfs_storage.save("mp3/song.mp3", ContentFile(b"abc"))
    stored = gridfs_storage.open(name)
    stored.close()

    # FieldFile.open() does this when a closed file is opened again.
    stored.open("rb")

    assert stored.read() == b"abc"


def test_save_picks_a_new_name_when_taken(gridfs_storage: GridFSStorage) -> None:
    first = gridfs_storage.save("mp3/song.mp3", ContentFile(b"one"))
    second = gridfs_storage.save("mp3/song.mp3", ContentFile(b"two"))

    assert first == "mp3/song.mp3"
    assert second != first
    assert second.startswith("mp3/song_") and second.endswith(".mp3")


def test_size_exists_and_delete_remove_every_version(gridfs_storage: GridFSStorage) -> None:
    name = gridfs_storage.save("mp3/song.mp3", ContentFile(os.urandom(200_000)))
    newest = os.urandom(150_000)
    upload_version(gridfs_storage, name, newest)
    versions = file_ids(gridfs_storage, name)
    assert len(versions) == 2

    assert gridfs_storage.exists(name)
    assert gridfs_storage.size(name) == len(newest)
    with gridfs_storage.open(name) as stored:
        assert stored.read() == newest

    gridfs_storage.delete(name)

    assert not gridfs_storage.exists(name)
    assert file_ids(gridfs_storage, name) == []
    assert gridfs_storage.chunks_collection.count_documents({"files_id": {"$in": versions}}) == 0
    # Deleting what is not there is not an error.
    gridfs_storage.delete(name)
    gridfs_storage.delete("never/stored.mp3")


def test_failing_source_stream_leaves_no_files_or_chunks(
    gridfs_storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pymongo buffers chunks (up to 48 MB) before inserting them; make it
    # insert each chunk at once so the failure really has chunks to clean up.
    monkeypatch.setattr(pymongo_grid_file, "_UPLOAD_BUFFER_SIZE", 0)
    chunks_before_failure: list[int] = []
    source = BrokenSourceFile(
        good_chunks=5,
        chunk_bytes=CHUNK_SIZE,
        on_failure=lambda: chunks_before_failure.append(gridfs_storage.chunks_collection.count_documents({})),
    )

    with pytest.raises(SourceStreamBroke):
        gridfs_storage.save("sources/broken.mp4", source)

    assert chunks_before_failure == [5]
    assert gridfs_storage.files_collection.count_documents({}) == 0
    assert gridfs_storage.chunks_collection.count_documents({}) == 0
    assert not gridfs_storage.exists("sources/broken.mp4")


def test_overwrite_keeps_the_old_file_when_the_new_write_fails(
    make_gridfs_storage: Callable[..., GridFSStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pymongo_grid_file, "_UPLOAD_BUFFER_SIZE", 0)
    storage = make_gridfs_storage(file_overwrite=True)
    old = os.urandom(300_000)
    name = storage.save("mp3/song.mp3", ContentFile(old))

    with pytest.raises(SourceStreamBroke):
        storage.save(name, BrokenSourceFile(good_chunks=3, chunk_bytes=CHUNK_SIZE))

    [old_id] = file_ids(storage, name)
    with storage.open(name) as stored:
        assert stored.read() == old
    assert storage.chunks_collection.count_documents({"files_id": {"$ne": old_id}}) == 0


def test_overwrite_replaces_the_old_file_once_the_new_one_is_stored(
    make_gridfs_storage: Callable[..., GridFSStorage],
) -> None:
    storage = make_gridfs_storage(file_overwrite=True)
    name = storage.save("mp3/song.mp3", ContentFile(os.urandom(300_000)))
    [old_id] = file_ids(storage, name)
    new = os.urandom(200_000)

    assert storage.save(name, ContentFile(new)) == name

    [new_id] = file_ids(storage, name)
    assert new_id != old_id
    assert storage.chunks_collection.count_documents({"files_id": old_id}) == 0
    with storage.open(name) as stored:
        assert stored.read() == new


def test_opening_a_missing_file_raises_file_not_found(gridfs_storage: GridFSStorage) -> None:
    with pytest.raises(FileNotFoundError):
        gridfs_storage.open("never/stored.mp3")
    with pytest.raises(FileNotFoundError):
        gridfs_storage.size("never/stored.mp3")


def test_only_read_modes_are_allowed(gridfs_storage: GridFSStorage) -> None:
    name = gridfs_storage.save("mp3/song.mp3", ContentFile(b"abc"))

    with pytest.raises(ValueError):
        gridfs_storage.open(name, "wb")


def test_save_streams_chunks_instead_of_reading_the_whole_source(gridfs_storage: GridFSStorage) -> None:
    data = os.urandom(8 * MB)
    source = NoReadAllBytesIO(data)

    name = gridfs_storage.save("sources/big.mp4", File(source, name="big.mp4"))

    assert 0 < source.largest_read <= CHUNK_SIZE
    assert gridfs_storage.size(name) == len(data)


def test_modified_time_is_aware_utc(gridfs_storage: GridFSStorage) -> None:
    name = gridfs_storage.save("mp3/song.mp3", ContentFile(b"abc"))

    modified = gridfs_storage.get_modified_time(name)

    assert modified.tzinfo is not None
    assert modified.utcoffset() == dt_timezone.utc.utcoffset(None)
    assert gridfs_storage.get_created_time(name) == modified


def test_listdir_treats_slashes_as_folders(gridfs_storage: GridFSStorage) -> None:
    for name in ("mp3/a.mp3", "mp3/b.mp3", "mp3/2024/c.mp3", "sources/d.mp4"):
        gridfs_storage.save(name, ContentFile(b"x"))

    assert gridfs_storage.listdir("mp3") == (["2024"], ["a.mp3", "b.mp3"])
    assert gridfs_storage.listdir("") == (["mp3", "sources"], [])


def test_url_is_not_available(gridfs_storage: GridFSStorage) -> None:
    with pytest.raises(NotImplementedError):
        gridfs_storage.url("mp3/song.mp3")


def test_client_is_shared_within_a_process_but_not_across_forks(
    gridfs_storage: GridFSStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent_client = gridfs_storage.client
    assert gridfs_storage.client is parent_client

    # What a gunicorn/Celery child sees after fork: same cache, new pid.
    real_pid = os.getpid()
    with monkeypatch.context() as patch:
        patch.setattr(os, "getpid", lambda: real_pid + 1)
        child_client = gridfs_storage.client

        assert child_client is not parent_client
        assert gridfs_storage.client is child_client

    assert gridfs_storage.client is parent_client


def test_ping_reports_a_reachable_server(gridfs_storage: GridFSStorage) -> None:
    assert gridfs_storage.ping() is True


def test_deconstruct_keeps_only_explicit_options() -> None:
    # The URI (with credentials) must not end up in migrations by default.
    path, args, kwargs = GridFSStorage(bucket="media").deconstruct()

    assert path == "conversions.storage.GridFSStorage"
    assert args == ()
    assert kwargs == {"bucket": "media"}
