"""Storages under test: GridFS (mongomock's, or the MongoDB that MONGODB_URI names) and S3 (moto's server).

GridFS: with MONGODB_URI set in the environment the tests run against that server, in a database unique to this
test session (dropped at the end). Without it they run against mongomock's GridFS integration.

S3: against moto's S3 server, a real HTTP server in its own process (`s3_server` in tests/fixtures/services.py),
each test under its own key prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import gridfs.synchronous.grid_file as pymongo_grid_file
import mongomock
import mongomock.gridfs
import pymongo
import pytest
from boto3.s3.transfer import TransferConfig

from conversions.storage import GridFSStorage, S3Storage
from conversions.storage import gridfs as gridfs_module
from tests.conversions.storage.helpers import CHUNK_SIZE, MOCK_MONGODB_URI, REAL_MONGODB_URI, S3_PART_SIZE, Backend
from tests.fixtures.services import S3_TEST_REGION


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


