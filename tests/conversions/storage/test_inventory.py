"""What each store holds, for the orphan scan (conversions/storage/inventory.py): the local folder, GridFS (mongomock's,
or MongoDB when MONGODB_URI is set) and S3 (moto's server). Only the service's folders are listed, each name once with
when it was last written; unfinished uploads' bytes are listed and removed apart from files."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage

from conversions.storage.inventory import FolderInventory, GridFSInventory, S3Inventory, store_inventory
from conversions.storage.resumable import resumable_store
from tests.conversions.storage.helpers import upload_version

NAMES = ["sources/0b5a2f0e-2d61-4a8e-9a55-0d0f4f3c1e7d", "mp3/0b5a2f0e-2d61-4a8e-9a55-0d0f4f3c1e7d-1.mp3",
         "tracks/0b5a2f0e-2d61-4a8e-9a55-0d0f4f3c1e7d-1-001.mp3"]


@pytest.fixture
def folder_storage(tmp_path) -> FileSystemStorage:
    return FileSystemStorage(location=str(tmp_path / "media"))


@pytest.fixture(params=["folder", "gridfs", "s3"])
def storage(request):
    return request.getfixturevalue(f"{request.param}_storage")


def later() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=5)


def test_the_inventory_is_picked_by_the_storage(folder_storage, gridfs_storage, s3_storage):
    assert type(store_inventory(folder_storage)) is FolderInventory
    assert type(store_inventory(gridfs_storage)) is GridFSInventory
    assert type(store_inventory(s3_storage)) is S3Inventory


def test_files_under_the_services_folders_with_when_they_were_written(storage):
    began = datetime.now(UTC) - timedelta(seconds=5)
    for name in NAMES:
        storage.save(name, ContentFile(b"bytes"))
    storage.save("elsewhere/not-ours.txt", ContentFile(b"bytes"))
    inventory = store_inventory(storage)

    listed = list(inventory.files(before=later()))
    assert sorted(stored.name for stored in listed) == sorted(NAMES)
    assert all(began <= stored.written_at <= later() for stored in listed)
    assert list(inventory.files(before=began)) == []  # none was written before

    inventory.remove_file(NAMES[0])
    assert sorted(stored.name for stored in inventory.files(before=later())) == sorted(NAMES[1:])
    storage.delete("elsewhere/not-ours.txt")
    for name in NAMES[1:]:
        storage.delete(name)


def test_a_folder_file_counts_as_written_when_it_was_last_modified(folder_storage):
    name = folder_storage.save(NAMES[0], ContentFile(b"bytes"))
    old = datetime(2020, 1, 1, tzinfo=UTC)
    os.utime(folder_storage.path(name), (old.timestamp(), old.timestamp()))
    [stored] = store_inventory(folder_storage).files(before=old + timedelta(seconds=1))
    assert (stored.name, stored.written_at) == (name, old)


def test_a_gridfs_name_counts_as_written_when_its_newest_version_was(gridfs_storage):
    gridfs_storage.save(NAMES[0], ContentFile(b"old"))
    upload_version(gridfs_storage, NAMES[0], b"new")
    [stored] = store_inventory(gridfs_storage).files(before=later())
    newest = gridfs_storage.get_modified_time(NAMES[0])
    assert (stored.name, stored.written_at) == (NAMES[0], newest)


@pytest.mark.parametrize("kind", ["gridfs", "s3"])
def test_unfinished_uploads_are_listed_and_removed(request, kind):
    storage = request.getfixturevalue(f"{kind}_storage")
    store = resumable_store(storage)
    state = store.begin(upload_id="u1", name=NAMES[0])
    state = store.append(state=state, offset=0, length=10 * 1024 * 1024, chunks=[b"x" * 1000]).state
    inventory = store_inventory(storage)

    [unfinished] = list(inventory.unfinished(before=later()))
    assert unfinished.ref == (state.get("file_id") or state.get("upload_id"))
    assert unfinished.name == ("" if kind == "gridfs" else NAMES[0])
    assert list(inventory.unfinished(before=datetime(2000, 1, 1, tzinfo=UTC))) == []

    inventory.remove_unfinished(unfinished)
    assert list(inventory.unfinished(before=later())) == []
    inventory.remove_unfinished(unfinished)  # harmless twice
    if kind == "gridfs":
        assert storage.chunks_collection.count_documents({}) == 0
    else:
        store.discard(state=state)  # its tail object


def test_a_finished_gridfs_file_is_not_an_unfinished_upload(gridfs_storage):
    gridfs_storage.save(NAMES[0], ContentFile(b"x" * 200_000))  # several chunks
    assert list(store_inventory(gridfs_storage).unfinished(before=later())) == []


def test_the_folder_store_has_no_unfinished_uploads_apart_from_its_files(folder_storage):
    state = resumable_store(folder_storage).begin(upload_id="u1", name=NAMES[0])
    inventory = store_inventory(folder_storage)
    assert list(inventory.unfinished(before=later())) == []
    assert [stored.name for stored in inventory.files(before=later())] == [state["partial"]]
