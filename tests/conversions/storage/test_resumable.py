"""Each store's append for resumable uploads (conversions/storage/resumable.py): the local folder, GridFS (mongomock's,
or MongoDB when MONGODB_URI is set) and S3 (moto's server). Bytes arrive in uneven requests, a discarded request
leaves the store as it was, the file becomes visible only when complete, and termination leaves nothing behind."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.core.files.storage import FileSystemStorage

from conversions.storage import resumable as resumable_module
from conversions.storage.resumable import FolderStore, GridFSStore, ResumableStore, S3Store, resumable_store
from tests.conversions.storage.helpers import MB, S3_PART_SIZE

NAME = "sources/0b5a2f0e-2d61-4a8e-9a55-0d0f4f3c1e7d"


def pieces(data: bytes, size: int = 300 * 1024) -> Iterator[bytes]:
    """A request's body as the API reads it: in pieces."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def folder_storage(tmp_path) -> FileSystemStorage:
    return FileSystemStorage(location=str(tmp_path / "media"))


@pytest.fixture
def small_s3_parts(monkeypatch):
    # S3's smallest part, so a few MB already spans several parts.
    monkeypatch.setattr(resumable_module, "S3_PART_SIZE", S3_PART_SIZE)


@pytest.fixture(params=["folder", "gridfs", "s3"])
def store(request) -> ResumableStore:
    if request.param == "s3":
        request.getfixturevalue("small_s3_parts")
        return resumable_store(request.getfixturevalue("s3_storage"))
    return resumable_store(request.getfixturevalue(f"{request.param}_storage"))


def test_the_store_is_picked_by_the_storage(folder_storage, gridfs_storage, s3_storage):
    assert type(resumable_store(folder_storage)) is FolderStore
    assert type(resumable_store(gridfs_storage)) is GridFSStore
    assert type(resumable_store(s3_storage)) is S3Store


def test_uneven_requests_a_discarded_one_and_completion(store):
    data = os.urandom(12 * MB + 12345)
    # Uneven cuts: across GridFS chunk and S3 part boundaries, one request of a single byte.
    cuts = [0, 3 * MB + 7, 3 * MB + 8, 8 * MB + 1, len(data)]
    state = store.begin(upload_id="u1", name=NAME)
    for start, end in zip(cuts, cuts[1:], strict=False):
        if start == 3 * MB + 8:
            # Sent, then refused (a checksum mismatch): the store is put back as it was before it.
            refused = store.append(state=state, offset=start, length=len(data), chunks=pieces(os.urandom(end - start)))
            refused.undo()
        appended = store.append(state=state, offset=start, length=len(data), chunks=pieces(data[start:end]))
        assert appended.size == end - start
        appended.settle()
        state = appended.state
        assert not store.storage.exists(NAME)  # never a visible file before the last byte
    store.complete(state=state, length=len(data), name=NAME)
    with store.storage.open(NAME, "rb") as stored:
        assert stored.read() == data
    with store.local_file(name=NAME) as path:
        with open(path, "rb") as local:
            assert local.read() == data
    if not isinstance(store, FolderStore):
        assert not os.path.exists(path)  # the probe's temporary copy is gone
    store.storage.delete(NAME)


def test_a_store_error_mid_request_keeps_nothing_of_it(store):
    data = os.urandom(7 * MB)
    state = store.begin(upload_id="u2", name=NAME)
    first = store.append(state=state, offset=0, length=len(data), chunks=pieces(data[: 2 * MB]))
    first.settle()

    def breaking() -> Iterator[bytes]:
        yield from pieces(data[2 * MB : 6 * MB])
        raise OSError("the client went away")

    with pytest.raises(OSError):
        store.append(state=first.state, offset=2 * MB, length=len(data), chunks=breaking())
    rest = store.append(state=first.state, offset=2 * MB, length=len(data), chunks=pieces(data[2 * MB :]))
    store.complete(state=rest.state, length=len(data), name=NAME)
    with store.storage.open(NAME, "rb") as stored:
        assert stored.read() == data
    store.storage.delete(NAME)


def test_discard_leaves_nothing(store, request):
    data = os.urandom(6 * MB)
    state = store.begin(upload_id="u3", name=NAME)
    appended = store.append(state=state, offset=0, length=len(data), chunks=pieces(data[: 5 * MB + 3]))
    appended.settle()
    store.discard(state=appended.state)
    store.discard(state=appended.state)  # twice: harmless
    assert not store.storage.exists(NAME)
    if isinstance(store, FolderStore):
        assert os.listdir(store.storage.path("uploads")) == []
    elif isinstance(store, GridFSStore):
        assert store.storage.chunks_collection.count_documents({}) == 0
    else:
        backend = request.getfixturevalue("s3_backend")
        assert backend.leftovers() == []
