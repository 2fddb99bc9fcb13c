"""What only GridFSStorage does: chunked documents, versions, overwrite, the per-process client."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from django.core.files.base import ContentFile

from conversions.storage import GridFSStorage
from tests.conversions.storage.helpers import CHUNK_SIZE, MB, SourceStreamBroke, broken_source, file_ids, upload_version


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


