"""What the storage tests share: sources that fail or refuse to be read whole, and the backends' constants."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.files import File
from django.core.files.storage import Storage

from conversions.storage import GridFSStorage, S3Storage

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


def read_in_pieces(file: File, piece_size: int) -> bytes:
    pieces = []
    while piece := file.read(piece_size):
        assert len(piece) <= piece_size
        pieces.append(piece)
    return b"".join(pieces)


def upload_version(storage: GridFSStorage, name: str, data: bytes) -> Any:
    """Store another version of ``name`` the way a concurrent writer would."""
    grid_in = storage.bucket.open_upload_stream(name)
    grid_in.write(data)
    grid_in.close()
    return grid_in._id


def file_ids(storage: GridFSStorage, name: str) -> list[Any]:
    return [doc["_id"] for doc in storage.files_collection.find({"filename": name}, {"_id": 1})]


def get_object_ranges(storage: S3Storage) -> list[str]:
    """The Content-Range of every GetObject this thread's client of `storage` gets from now on."""
    ranges: list[str] = []
    storage.connection.meta.client.meta.events.register(
        "after-call.s3.GetObject", lambda parsed, **kwargs: ranges.append(parsed.get("ContentRange", "whole"))
    )
    return ranges


