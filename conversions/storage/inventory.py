"""What a file store holds, for the retention sweep's orphan scan (conversions/services/retention.py): every stored file
under the service's folders with when it was last written, and the bytes of unfinished uploads that no file shows
(GridFS chunks that have no files document yet, S3 multipart uploads neither completed nor aborted), each with a way to
remove it.

One class per store, picked by the storage's type (`store_inventory()`), as for resumable uploads. Everything is
listed lazily, in the store's own pages: a large store is never held in memory at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from pathlib import Path

from botocore.exceptions import ClientError
from bson import ObjectId
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage, default_storage

from .gridfs import GridFSStorage
from .s3 import S3Storage

# The folders the service stores under (conversions/filenames.py; `uploads/` holds the folder store's partial
# resumable uploads). Nothing else in a store is ever looked at, let alone removed.
FOLDERS = ("sources", "mp3", "tracks", "uploads")
# GridFS file ids asked about at once.
ID_BATCH = 1000


@dataclass(frozen=True)
class StoredFile:
    name: str  # the storage's name for it, as a FileField holds it
    written_at: datetime


@dataclass(frozen=True)
class Unfinished:
    """An upload's bytes that no file shows yet."""

    ref: str  # how a resumable upload's store state names them: a GridFS file id, an S3 multipart upload id
    name: str  # the file they would become, when the store says ("" for GridFS chunks)
    written_at: datetime  # when the upload began


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ours(name: str) -> bool:
    return name.split("/", 1)[0] in FOLDERS and "/" in name


class Inventory:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def files(self, *, before: datetime) -> Iterator[StoredFile]:
        """The stored files under FOLDERS last written before `before`."""
        raise NotImplementedError

    def unfinished(self, *, before: datetime) -> Iterator[Unfinished]:
        """Unfinished uploads' bytes begun before `before`; the folder store has none (its partial uploads are files
        under `uploads/`)."""
        return iter(())

    def remove_file(self, name: str) -> None:
        self.storage.delete(name)

    def remove_unfinished(self, item: Unfinished) -> None:
        raise NotImplementedError


class FolderInventory(Inventory):
    storage: FileSystemStorage

    def files(self, *, before: datetime) -> Iterator[StoredFile]:
        root = Path(self.storage.location)
        for folder in FOLDERS:
            for directory, _, names in os.walk(root / folder):
                for name in sorted(names):
                    path = Path(directory) / name
                    try:
                        written_at = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
                    except FileNotFoundError:  # removed meanwhile
                        continue
                    if written_at < before:
                        yield StoredFile(path.relative_to(root).as_posix(), written_at)


class GridFSInventory(Inventory):
    storage: GridFSStorage

    def files(self, *, before: datetime) -> Iterator[StoredFile]:
        # Every version of a name together (the filename index keeps them in order): a name counts as written when
        # its newest version was.
        pattern = "^(" + "|".join(FOLDERS) + ")/"
        documents = self.storage.files_collection.find(
            {"filename": {"$regex": pattern}}, {"filename": 1, "uploadDate": 1}
        ).sort([("filename", 1)])
        for name, versions in groupby(documents, key=itemgetter("filename")):
            written_at = max(_utc(version["uploadDate"]) for version in versions)
            if written_at < before:
                yield StoredFile(name, written_at)

    def unfinished(self, *, before: datetime) -> Iterator[Unfinished]:
        # A file id is an ObjectId made when its upload began: chunks of uploads begun before `before` whose files
        # document was never written.
        chunks, files = self.storage.chunks_collection, self.storage.files_collection
        file_ids = chunks.distinct("files_id", {"files_id": {"$lt": ObjectId.from_datetime(before)}})
        for start in range(0, len(file_ids), ID_BATCH):
            batch = file_ids[start : start + ID_BATCH]
            finished = set(files.distinct("_id", {"_id": {"$in": batch}}))
            for file_id in batch:
                if file_id not in finished and isinstance(file_id, ObjectId):
                    yield Unfinished(ref=str(file_id), name="", written_at=file_id.generation_time)

    def remove_unfinished(self, item: Unfinished) -> None:
        self.storage.chunks_collection.delete_many({"files_id": ObjectId(item.ref)})


class S3Inventory(Inventory):
    storage: S3Storage

    @property
    def client(self):
        return self.storage.connection.meta.client

    @property
    def root(self) -> str:
        """What every key of this storage starts with: its location (S3_PREFIX) and a slash, or nothing."""
        location = (self.storage.location or "").strip("/")
        return f"{location}/" if location else ""

    def files(self, *, before: datetime) -> Iterator[StoredFile]:
        pages = self.client.get_paginator("list_objects_v2")
        for folder in FOLDERS:
            for page in pages.paginate(Bucket=self.storage.bucket_name, Prefix=f"{self.root}{folder}/"):
                for entry in page.get("Contents", ()):
                    written_at = _utc(entry["LastModified"])
                    if written_at < before:
                        yield StoredFile(entry["Key"][len(self.root) :], written_at)

    def unfinished(self, *, before: datetime) -> Iterator[Unfinished]:
        pages = self.client.get_paginator("list_multipart_uploads")
        for page in pages.paginate(Bucket=self.storage.bucket_name, Prefix=self.root):
            for upload in page.get("Uploads", ()):
                name, begun = upload["Key"][len(self.root) :], _utc(upload["Initiated"])
                if begun < before and _ours(name):
                    yield Unfinished(ref=upload["UploadId"], name=name, written_at=begun)

    def remove_unfinished(self, item: Unfinished) -> None:
        try:
            self.client.abort_multipart_upload(
                Bucket=self.storage.bucket_name, Key=f"{self.root}{item.name}", UploadId=item.ref
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise


def store_inventory(storage: Storage | None = None) -> Inventory:
    """The inventory class for `storage` (the default storage unless given)."""
    storage = storage if storage is not None else default_storage
    kinds = ((GridFSStorage, GridFSInventory), (S3Storage, S3Inventory), (FileSystemStorage, FolderInventory))
    for kind, inventory in kinds:
        if isinstance(storage, kind):
            return inventory(storage)
    raise ImproperlyConfigured(f"The retention sweep cannot list {type(storage).__name__}.")
