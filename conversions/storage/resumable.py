"""Appending a resumable upload's bytes to the file store, one request at a time, never holding the file in memory.

One class per store, picked by the storage's type (`resumable_store()`):

- the local folder (FileSystemStorage): a partial file, `uploads/<upload id>.part`, appended to in place and moved to
  the source's name when complete (no second copy of the bytes);
- GridFS: chunk documents written directly under a file id chosen at creation. The files document, which is what
  makes a GridFS file visible, is inserted only once the last byte arrived: a partial upload is never a file;
- S3: a multipart upload to the source's key. Parts must be at least 5 MiB (except the last), so what a request
  leaves below that is kept in a small side object, `<key>.tail-<offset>`, which the next request reads back first.

`append()` returns an `Appended`: the bytes written, the store's new state, `undo()` (a checksum mismatch discards
the chunk: the store is as it was before the request) and `settle()` (once the new state is committed, drop what only
the old one needed). Memory is bounded by one GridFS chunk or one S3 part plus one read from the request.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from typing import Any

from bson import Binary, ObjectId
from botocore.exceptions import ClientError
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from storages.utils import clean_name

from .gridfs import GridFSStorage
from .s3 import S3Storage

MB = 1024 * 1024
# S3 refuses parts under 5 MiB except the last; a little above keeps each request's buffer bounded and small.
S3_PART_SIZE = 8 * MB
# Copies for the probe (GridFS, S3) are read this much at a time.
COPY_CHUNK = MB


def _nothing() -> None:
    return None


@dataclass
class Appended:
    size: int
    state: dict[str, Any]
    undo: Callable[[], None]
    settle: Callable[[], None] = field(default=_nothing)


class ResumableStore:
    """How one kind of store keeps an upload's bytes while it grows (see the module's docstring)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def begin(self, *, upload_id: Any, name: str) -> dict[str, Any]:
        """Prepare an empty upload that will become the stored file `name`; returns the store's state."""
        raise NotImplementedError

    def append(self, *, state: dict[str, Any], offset: int, length: int, chunks: Iterable[bytes]) -> Appended:
        """Write `chunks` at `offset` of an upload of `length` bytes. On an error nothing of them is kept."""
        raise NotImplementedError

    def complete(self, *, state: dict[str, Any], length: int, name: str) -> None:
        """Make the received bytes the stored file `name`."""
        raise NotImplementedError

    def discard(self, *, state: dict[str, Any]) -> None:
        """Remove an unfinished upload's bytes (termination, expiry). Harmless when they are already gone."""
        raise NotImplementedError

    @contextmanager
    def local_file(self, *, name: str) -> Iterator[str]:
        """A local path holding the stored file `name`, for the probe: a temporary copy, removed afterwards."""
        descriptor, path = tempfile.mkstemp(prefix="mp3converter-upload-")
        try:
            with os.fdopen(descriptor, "wb") as copy, self.storage.open(name, "rb") as stored:
                shutil.copyfileobj(stored, copy, COPY_CHUNK)
            yield path
        finally:
            with suppress(FileNotFoundError):
                os.remove(path)


class FolderStore(ResumableStore):
    storage: FileSystemStorage

    def begin(self, *, upload_id: Any, name: str) -> dict[str, Any]:
        partial = f"uploads/{upload_id}.part"
        path = self.storage.path(partial)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "xb"):
            pass
        return {"partial": partial}

    def append(self, *, state: dict[str, Any], offset: int, length: int, chunks: Iterable[bytes]) -> Appended:
        path = self.storage.path(state["partial"])

        def undo() -> None:
            with open(path, "r+b") as file:
                file.truncate(offset)

        written = 0
        try:
            with open(path, "r+b") as file:
                file.seek(offset)
                for chunk in chunks:
                    file.write(chunk)
                    written += len(chunk)
                # A request that died before its offset was committed may have left bytes past the new end.
                file.truncate()
        except BaseException:
            undo()
            raise
        return Appended(size=written, state=state, undo=undo)

    def complete(self, *, state: dict[str, Any], length: int, name: str) -> None:
        target = self.storage.path(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(self.storage.path(state["partial"]), target)

    def discard(self, *, state: dict[str, Any]) -> None:
        with suppress(FileNotFoundError):
            os.remove(self.storage.path(state["partial"]))

    @contextmanager
    def local_file(self, *, name: str) -> Iterator[str]:
        # Already a local file: read in place, never copied.
        yield self.storage.path(name)


class GridFSStore(ResumableStore):
    storage: GridFSStorage

    def begin(self, *, upload_id: Any, name: str) -> dict[str, Any]:
        # The index GridFS itself would create on a first upload: reads find chunks by (files_id, n).
        self.storage.chunks_collection.create_index([("files_id", 1), ("n", 1)], unique=True)
        return {"file_id": str(ObjectId()), "chunk_size": self.storage.chunk_size_bytes}

    def append(self, *, state: dict[str, Any], offset: int, length: int, chunks: Iterable[bytes]) -> Appended:
        chunk_size, file_id = state["chunk_size"], ObjectId(state["file_id"])
        collection = self.storage.chunks_collection
        first = offset // chunk_size
        # The last chunk is partial until it fills: read it back and rewrite it longer.
        tail_document = collection.find_one({"files_id": file_id, "n": first})
        original = bytes(tail_document["data"]) if tail_document else None
        buffer = bytearray((original or b"")[: offset % chunk_size])

        def put(number: int, data: bytes | bytearray) -> None:
            collection.replace_one(
                {"files_id": file_id, "n": number},
                {"files_id": file_id, "n": number, "data": Binary(bytes(data))},
                upsert=True,
            )

        def undo() -> None:
            collection.delete_many({"files_id": file_id, "n": {"$gt": first}})
            if original is not None:
                put(first, original)
            else:
                collection.delete_many({"files_id": file_id, "n": first})

        written, number = 0, first
        try:
            for chunk in chunks:
                buffer += chunk
                written += len(chunk)
                while len(buffer) >= chunk_size:
                    put(number, buffer[:chunk_size])
                    del buffer[:chunk_size]
                    number += 1
            if buffer:
                put(number, buffer)
            last = number if buffer else number - 1
            # Chunks past the new end, from a request that died before its offset was committed.
            collection.delete_many({"files_id": file_id, "n": {"$gt": last}})
        except BaseException:
            undo()
            raise
        return Appended(size=written, state=state, undo=undo)

    def complete(self, *, state: dict[str, Any], length: int, name: str) -> None:
        content_type = mimetypes.guess_type(name)[0]
        self.storage.files_collection.insert_one(
            {
                "_id": ObjectId(state["file_id"]),
                "length": length,
                "chunkSize": state["chunk_size"],
                "uploadDate": datetime.now(dt_timezone.utc),
                "filename": name,
                **({"metadata": {"contentType": content_type}} if content_type else {}),
            }
        )

    def discard(self, *, state: dict[str, Any]) -> None:
        self.storage.chunks_collection.delete_many({"files_id": ObjectId(state["file_id"])})


class S3Store(ResumableStore):
    storage: S3Storage

    @property
    def client(self) -> Any:
        return self.storage.connection.meta.client

    @property
    def bucket(self) -> str:
        return self.storage.bucket_name

    def begin(self, *, upload_id: Any, name: str) -> dict[str, Any]:
        key = self.storage._normalize_name(clean_name(name))
        parameters = self.storage._get_write_parameters(name)
        started = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **parameters)
        return {"key": key, "upload_id": started["UploadId"], "parts": [], "tail": None}

    def append(self, *, state: dict[str, Any], offset: int, length: int, chunks: Iterable[bytes]) -> Appended:
        key, upload_id, old_tail = state["key"], state["upload_id"], state["tail"]
        parts = list(state["parts"])
        buffer = bytearray()
        if old_tail:
            buffer += self.client.get_object(Bucket=self.bucket, Key=old_tail)["Body"].read()
        new_tail: list[str] = []

        def upload_part(data: bytes | bytearray) -> None:
            # Numbers follow the committed parts: a discarded request's parts are overwritten, never completed.
            number = len(parts) + 1
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(data)
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})

        def undo() -> None:
            for tail in new_tail:
                self._delete(tail)

        written = 0
        try:
            for chunk in chunks:
                buffer += chunk
                written += len(chunk)
                while len(buffer) >= S3_PART_SIZE:
                    upload_part(buffer[:S3_PART_SIZE])
                    del buffer[:S3_PART_SIZE]
            if offset + written >= length:
                if buffer:
                    upload_part(buffer)
            elif buffer:
                new_tail.append(f"{key}.tail-{offset + written}")
                self.client.put_object(Bucket=self.bucket, Key=new_tail[0], Body=bytes(buffer))
        except BaseException:
            undo()
            raise
        tail = new_tail[0] if new_tail else None

        def settle() -> None:
            if old_tail and old_tail != tail:
                self._delete(old_tail)

        return Appended(size=written, state={**state, "parts": parts, "tail": tail}, undo=undo, settle=settle)

    def complete(self, *, state: dict[str, Any], length: int, name: str) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=state["key"], UploadId=state["upload_id"], MultipartUpload={"Parts": state["parts"]}
        )
        if state["tail"]:
            self._delete(state["tail"])

    def discard(self, *, state: dict[str, Any]) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=state["key"], UploadId=state["upload_id"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
        if state["tail"]:
            self._delete(state["tail"])

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


def resumable_store(storage: Storage | None = None) -> ResumableStore:
    """The store class for `storage` (the default storage unless given)."""
    storage = storage if storage is not None else default_storage
    for kind, store in ((GridFSStorage, GridFSStore), (S3Storage, S3Store), (FileSystemStorage, FolderStore)):
        if isinstance(storage, kind):
            return store(storage)
    raise ImproperlyConfigured(f"Resumable uploads do not support {type(storage).__name__}.")
