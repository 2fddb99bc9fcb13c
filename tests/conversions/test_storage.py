"""
Tests for the shared storages in conversions.storage: GridFSStorage and S3Storage.

The tests that hold for any storage run against both (the `backend` fixture);
the rest test what only one of them has.

GridFS: with MONGODB_URI set in the environment they run against that server,
in a database unique to this test session (dropped at the end). Without it
they run against mongomock's GridFS integration.

S3: against moto's S3 server, a real HTTP server in its own process
(`s3_server` in tests/conftest.py), each test under its own key prefix.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timezone as dt_timezone
from typing import Any

import gridfs.synchronous.grid_file as pymongo_grid_file
import mongomock
import mongomock.gridfs
import pymongo
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage

from conversions.storage import gridfs as gridfs_module
from conversions.storage import GridFSStorage, S3Storage
from tests.conftest import S3_TEST_REGION

REAL_MONGODB_URI = os.environ.get("MONGODB_URI")
MOCK_MONGODB_URI = "mongodb://localhost/mp3converter_test"

# Small GridFS chunks so a few MB already spans dozens of chunks.
CHUNK_SIZE = 64 * 1024
MB = 1024 * 1024
# S3's smallest multipart part (s3transfer raises anything smaller to it): uploads past it go in parts.
S3_PART_SIZE = 5 * MB


class SourceStreamBroke(Exception):
    """Stands for a source that fails halfway through being stored (a disk error, a client gone away)."""


class BrokenSource(io.RawIOBase):
    """A seekable source of ``size`` bytes whose reads fail once ``good_bytes`` have been read."""

    def __init__(self, *, size: int, good_bytes: int, on_failure: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.size = size
        self.good_bytes = good_bytes
        self.on_failure = on_failure
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence] + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        if self.position >= self.good_bytes:
            if self.on_failure is not None:
                self.on_failure()
            raise SourceStreamBroke("the source went away")
        count = min(len(buffer), self.good_bytes - self.position)
        buffer[:count] = os.urandom(count)
        self.position += count
        return count


def broken_source(**kwargs: Any) -> File:
    return File(BrokenSource(**kwargs), name="broken.mp4")


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


# --- GridFS ------------------------------------------------------------------------------------------------------
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
    monkeypatch.setattr(gridfs_module, "_clients", clients)
    # pymongo buffers chunks (up to 48 MB) before inserting them; make it
    # insert each chunk at once so a failed upload really has chunks to clean up.
    monkeypatch.setattr(pymongo_grid_file, "_UPLOAD_BUFFER_SIZE", 0)
    if REAL_MONGODB_URI is None:
        monkeypatch.setattr(gridfs_module, "client_factory", mongomock.MongoClient)

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


# --- S3 ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def s3_prefix(s3_server) -> Iterator[str]:
    """A key prefix of this test's own in the session bucket, emptied afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield prefix
    s3_server.empty(s3_server.bucket, f"{prefix}/")


@pytest.fixture
def make_s3_storage(s3_server, s3_prefix: str, s3_credentials) -> Callable[..., S3Storage]:
    def make(**overrides: Any) -> S3Storage:
        kwargs: dict[str, Any] = {
            "bucket_name": s3_server.bucket,
            "endpoint_url": s3_server.endpoint_url,
            "region_name": S3_TEST_REGION,
            "addressing_style": "path",
            "location": s3_prefix,
            "file_overwrite": False,
            # Parts of the smallest size, uploaded one after the other: a failure part-way is deterministic.
            "transfer_config": TransferConfig(
                multipart_threshold=S3_PART_SIZE, multipart_chunksize=S3_PART_SIZE, use_threads=False
            ),
            **overrides,
        }
        return S3Storage(**kwargs)

    return make


@pytest.fixture
def s3_storage(make_s3_storage: Callable[..., S3Storage]) -> S3Storage:
    return make_s3_storage()


# --- Either backend ----------------------------------------------------------------------------------------------
@dataclass
class Backend:
    """A storage under test, plus what only the server behind it can tell."""

    storage: Storage
    # What the storage stores one at a time: a GridFS chunk, an S3 multipart part.
    piece_size: int
    # Pieces of uploads that have begun and not finished.
    unfinished_pieces: Callable[[], int]
    # Everything kept on the server, finished or not.
    leftovers: Callable[[], list[Any]]


@pytest.fixture
def gridfs_backend(gridfs_storage: GridFSStorage) -> Backend:
    def unfinished_pieces() -> int:
        finished = [document["_id"] for document in gridfs_storage.files_collection.find({}, {"_id": 1})]
        return gridfs_storage.chunks_collection.count_documents({"files_id": {"$nin": finished}})

    return Backend(
        storage=gridfs_storage,
        piece_size=CHUNK_SIZE,
        unfinished_pieces=unfinished_pieces,
        leftovers=lambda: [*gridfs_storage.files_collection.find(), *gridfs_storage.chunks_collection.find()],
    )


@pytest.fixture
def s3_backend(s3_storage: S3Storage, s3_server, s3_prefix: str) -> Backend:
    client, bucket = s3_server.client(), s3_server.bucket

    def unfinished_pieces() -> int:
        return sum(
            len(client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts", []))
            for upload in s3_server.unfinished_uploads(bucket, f"{s3_prefix}/")
        )

    return Backend(
        storage=s3_storage,
        piece_size=S3_PART_SIZE,
        unfinished_pieces=unfinished_pieces,
        leftovers=lambda: [
            *s3_server.keys(bucket, f"{s3_prefix}/"), *s3_server.unfinished_uploads(bucket, f"{s3_prefix}/")
        ],
    )


@pytest.fixture(params=["gridfs", "s3"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"{request.param}_backend")


def read_in_pieces(file: File, piece_size: int) -> bytes:
    pieces = []
    while piece := file.read(piece_size):
        assert len(piece) <= piece_size
        pieces.append(piece)
    return b"".join(pieces)


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


# --- GridFS only -------------------------------------------------------------------------------------------------
def upload_version(storage: GridFSStorage, name: str, data: bytes) -> Any:
    """Store another version of ``name`` the way a concurrent writer would."""
    grid_in = storage.bucket.open_upload_stream(name)
    grid_in.write(data)
    grid_in.close()
    return grid_in._id


def file_ids(storage: GridFSStorage, name: str) -> list[Any]:
    return [doc["_id"] for doc in storage.files_collection.find({"filename": name}, {"_id": 1})]


def test_gridfs_stores_a_file_in_chunk_sized_documents(gridfs_storage: GridFSStorage) -> None:
    data = os.urandom(3 * MB + 12345)

    name = gridfs_storage.save("sources/clip.mp4", ContentFile(data))

    [file_id] = file_ids(gridfs_storage, name)
    expected_chunks = -(-len(data) // CHUNK_SIZE)
    assert gridfs_storage.chunks_collection.count_documents({"files_id": file_id}) == expected_chunks


def test_gridfs_reads_the_newest_version_and_delete_removes_every_version(gridfs_storage: GridFSStorage) -> None:
    name = gridfs_storage.save("mp3/song.mp3", ContentFile(os.urandom(200_000)))
    newest = os.urandom(150_000)
    upload_version(gridfs_storage, name, newest)
    versions = file_ids(gridfs_storage, name)
    assert len(versions) == 2

    assert gridfs_storage.size(name) == len(newest)
    with gridfs_storage.open(name) as stored:
        assert stored.read() == newest

    gridfs_storage.delete(name)

    assert not gridfs_storage.exists(name)
    assert file_ids(gridfs_storage, name) == []
    assert gridfs_storage.chunks_collection.count_documents({"files_id": {"$in": versions}}) == 0


def test_overwrite_keeps_the_old_file_when_the_new_write_fails(
    make_gridfs_storage: Callable[..., GridFSStorage],
) -> None:
    storage = make_gridfs_storage(file_overwrite=True)
    old = os.urandom(300_000)
    name = storage.save("mp3/song.mp3", ContentFile(old))

    with pytest.raises(SourceStreamBroke):
        storage.save(name, broken_source(size=10 * CHUNK_SIZE, good_bytes=3 * CHUNK_SIZE))

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


def test_gridfs_opens_for_reading_only(gridfs_storage: GridFSStorage) -> None:
    name = gridfs_storage.save("mp3/song.mp3", ContentFile(b"abc"))

    with pytest.raises(ValueError):
        gridfs_storage.open(name, "wb")


def test_gridfs_created_time_is_the_upload_time(gridfs_storage: GridFSStorage) -> None:
    name = gridfs_storage.save("mp3/song.mp3", ContentFile(b"abc"))

    assert gridfs_storage.get_created_time(name) == gridfs_storage.get_modified_time(name)


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


def test_deconstruct_keeps_only_explicit_options() -> None:
    # The URI (with credentials) must not end up in migrations by default.
    path, args, kwargs = GridFSStorage(bucket="media").deconstruct()

    assert path == "conversions.storage.GridFSStorage"
    assert args == ()
    assert kwargs == {"bucket": "media"}


# --- S3 only -----------------------------------------------------------------------------------------------------
def get_object_ranges(storage: S3Storage) -> list[str]:
    """The Content-Range of every GetObject this thread's client of `storage` gets from now on."""
    ranges: list[str] = []
    storage.connection.meta.client.meta.events.register(
        "after-call.s3.GetObject", lambda parsed, **kwargs: ranges.append(parsed.get("ContentRange", "whole"))
    )
    return ranges


def test_s3_reads_stream_from_the_position_instead_of_downloading_the_object(s3_storage: S3Storage) -> None:
    data = os.urandom(12 * MB)
    name = s3_storage.save("mp3/long.mp3", ContentFile(data))
    ranges = get_object_ranges(s3_storage)

    with s3_storage.open(name) as stored:
        assert ranges == []  # opening costs a HEAD, no download
        stored.seek(10 * MB)
        assert stored.read(100) == data[10 * MB : 10 * MB + 100]
        assert stored.read(100) == data[10 * MB + 100 : 10 * MB + 200]  # the same response, read on
        stored.seek(0)
        assert stored.read(10) == data[:10]

    assert ranges == [f"bytes {10 * MB}-{len(data) - 1}/{len(data)}", f"bytes 0-{len(data) - 1}/{len(data)}"]


def test_s3_read_fails_rather_than_mix_two_versions_of_an_object(
    s3_storage: S3Storage, s3_server, s3_prefix: str
) -> None:
    name = s3_storage.save("mp3/song.mp3", ContentFile(b"old bytes"))
    stored = s3_storage.open(name)
    # Replaced behind the storage's back (it never overwrites a name itself) after open() saw the old size.
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=f"{s3_prefix}/{name}", Body=b"new and longer bytes")

    with pytest.raises(ClientError) as raised:
        stored.read()

    assert raised.value.response["Error"]["Code"] == "PreconditionFailed"
    stored.close()


def test_s3_stores_objects_without_a_public_acl(s3_storage: S3Storage, s3_server, s3_prefix: str) -> None:
    name = s3_storage.save("mp3/song.mp3", ContentFile(b"ID3"))

    grants = s3_server.client().get_object_acl(Bucket=s3_server.bucket, Key=f"{s3_prefix}/{name}")["Grants"]

    assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]
    assert all(grant["Grantee"]["Type"] == "CanonicalUser" for grant in grants)


def test_s3_keys_carry_the_prefix(s3_storage: S3Storage, s3_server, s3_prefix: str) -> None:
    name = s3_storage.save("sources/clip.mp4", ContentFile(b"x"))

    assert name == "sources/clip.mp4"
    assert s3_server.keys(s3_server.bucket, f"{s3_prefix}/") == [f"{s3_prefix}/sources/clip.mp4"]


def test_s3_ping_fails_for_a_missing_bucket(make_s3_storage: Callable[..., S3Storage]) -> None:
    assert make_s3_storage(bucket_name=f"missing-{uuid.uuid4().hex[:12]}").ping() is False


def test_s3_storage_deconstructs_to_its_own_path() -> None:
    path, args, kwargs = S3Storage(bucket_name="media").deconstruct()

    assert path == "conversions.storage.S3Storage"
    assert kwargs == {"bucket_name": "media"}
