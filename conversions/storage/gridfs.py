"""GridFSStorage: a Django storage over a MongoDB GridFS bucket.

The API process and the conversion workers run on different machines, so they cannot share a local disk; GridFS is
one shared blob store (S3 is the other, in ``s3.py``). ``GridFSStorage`` lets the rest of the code treat GridFS like
any other Django storage (``FileField``, ``storage.open()``, ``storage.save()``) while streaming data in GridFS-sized
chunks instead of holding whole files in memory.

Configure it through ``STORAGES`` rather than passing ``uri=`` explicitly on a model field: deconstruction records
explicit kwargs in migrations, and the URI carries credentials.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import threading
from collections.abc import Callable
from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files import File
from django.core.files.storage import Storage
from django.utils import timezone
from django.utils.deconstruct import deconstructible
from gridfs import DEFAULT_CHUNK_SIZE, GridFSBucket, GridIn, GridOut
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import PyMongoError

from .base import READ_MODES, ReadOnlyStoredFile

logger = logging.getLogger(__name__)

DEFAULT_DATABASE_NAME = "mp3converter"
DEFAULT_BUCKET_NAME = "fs"
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5000

# Replaced by tests with ``mongomock.MongoClient``. Called as
# ``client_factory(uri, **pymongo_client_options)``.
ClientFactory = Callable[..., MongoClient]
client_factory: ClientFactory = MongoClient

# One client per (uri, pid). A MongoClient must never be used across fork():
# its sockets and background monitor threads belong to the parent. Keying on
# the pid makes a gunicorn/Celery child that inherited the parent's cache
# build its own client instead of reusing the parent's. Inherited entries are
# left untouched on purpose: closing them from the child could disturb
# connections that the parent still owns.
_clients: dict[tuple[str, int], MongoClient] = {}
_clients_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    # Another thread may have held the lock at fork time; in the child that
    # thread no longer exists, so the lock would stay locked forever.
    global _clients_lock
    _clients_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)


def get_client(
    uri: str,
    *,
    server_selection_timeout_ms: int = DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
) -> MongoClient:
    """
    Return this process's client for ``uri``, creating it on first use.

    The first caller's timeout wins for the lifetime of the process.
    """
    key = (uri, os.getpid())
    client = _clients.get(key)
    if client is not None:
        return client

    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            # connect=False: no I/O until the first operation, so importing
            # or constructing a storage never blocks on MongoDB. Short
            # selection/connect timeouts make an unreachable server fail a
            # request (or readiness probe) quickly instead of hanging 30 s.
            client = client_factory(
                uri,
                connect=False,
                serverSelectionTimeoutMS=server_selection_timeout_ms,
                connectTimeoutMS=server_selection_timeout_ms,
            )
            _clients[key] = client
    return client


class GridFSFile(ReadOnlyStoredFile):
    """
    One stored GridFS file version opened for reading.

    Wraps a ``GridOut`` (read(n)/seek/tell), with size and content type taken
    from the files document instead of Django's filesystem-based guesses.
    """

    def __init__(
        self,
        root_collection: Collection,
        file_document: dict[str, Any],
        name: str,
    ) -> None:
        self._root_collection = root_collection
        self._file_document = file_document
        super().__init__(self._stream(), name=name)
        # File.size would otherwise fall back to os.path.getsize(name), which
        # could stat an unrelated local file with the same relative name.
        self.size = int(file_document["length"])
        self.mode = "rb"
        metadata = file_document.get("metadata") or {}
        self.content_type: str | None = metadata.get("contentType")

    def _stream(self) -> GridOut:
        # Built from the files document we already have: no extra query, and
        # a reopen reads the same version that size/content_type describe.
        return GridOut(self._root_collection, file_document=self._file_document)



@deconstructible(path="conversions.storage.GridFSStorage")
class GridFSStorage(Storage):
    """
    Django storage over a GridFS bucket.

    GridFS keeps every upload as a separate version of a filename. Reads
    return the newest version; ``delete()`` removes all of them; with
    ``file_overwrite=True`` a save replaces the previous versions.
    """

    def __init__(
        self,
        *,
        uri: str | None = None,
        database: str | None = None,
        bucket: str = DEFAULT_BUCKET_NAME,
        chunk_size_bytes: int = DEFAULT_CHUNK_SIZE,
        file_overwrite: bool = False,
        server_selection_timeout_ms: int = DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    ) -> None:
        self._uri = uri
        self._database = database
        self.bucket_name = bucket
        self.chunk_size_bytes = chunk_size_bytes
        self.file_overwrite = file_overwrite
        self.server_selection_timeout_ms = server_selection_timeout_ms

    # Connection plumbing. Nothing below is cached on the instance: a storage
    # created before a fork (e.g. gunicorn --preload) must pick up the child's
    # own client, which only the pid-keyed cache guarantees.

    @property
    def uri(self) -> str:
        # Read lazily so the storage can be built before settings are final
        # and so a missing URI only fails when MongoDB is actually needed.
        uri = self._uri if self._uri is not None else getattr(settings, "MONGODB_URI", None)
        if not uri:
            raise ImproperlyConfigured(
                "GridFSStorage needs a MongoDB URI: set MONGODB_URI or pass uri=."
            )
        return uri

    @property
    def client(self) -> MongoClient:
        return get_client(
            self.uri,
            server_selection_timeout_ms=self.server_selection_timeout_ms,
        )

    @property
    def database(self) -> Database:
        if self._database is not None:
            return self.client[self._database]
        return self.client.get_default_database(default=DEFAULT_DATABASE_NAME)

    @property
    def bucket(self) -> GridFSBucket:
        # Cheap to build (no I/O), so no need to cache it across forks.
        return GridFSBucket(
            self.database,
            bucket_name=self.bucket_name,
            chunk_size_bytes=self.chunk_size_bytes,
        )

    @property
    def files_collection(self) -> Collection:
        return self.database[f"{self.bucket_name}.files"]

    @property
    def chunks_collection(self) -> Collection:
        return self.database[f"{self.bucket_name}.chunks"]

    def ping(self) -> bool:
        """Readiness check: True if the MongoDB server answers a ping."""
        try:
            self.client.admin.command("ping")
        except PyMongoError as exc:
            # Probes run every few seconds: one line, not a traceback.
            logger.warning("MongoDB ping failed: %s", exc)
            return False
        return True

    # Storage API.

    def _open(self, name: str, mode: str = "rb") -> GridFSFile:
        if mode not in READ_MODES:
            raise ValueError(f"GridFS files can only be opened for reading, not {mode!r}.")
        return GridFSFile(
            self.database[self.bucket_name],
            self._require_latest_file_document(name),
            name=name,
        )

    def _save(self, name: str, content: File) -> str:
        # Snapshot what exists before uploading so that, when overwriting, we
        # only remove versions that predate ours and never a concurrent
        # writer's newer upload.
        previous_version_ids = self._version_ids(name) if self.file_overwrite else []

        # From the stored name, not the client-supplied upload header: the
        # download view replays it as Content-Type.
        content_type = mimetypes.guess_type(name)[0]
        metadata = {"contentType": content_type} if content_type else None

        grid_in = self.bucket.open_upload_stream(name, metadata=metadata)
        try:
            # Feed GridFS chunk-sized pieces so memory is bounded by pymongo's
            # insert batch (at most ~48 MB of chunks), not by the file size.
            for chunk in content.chunks(chunk_size=self.chunk_size_bytes):
                if isinstance(chunk, str):
                    chunk = chunk.encode()
                grid_in.write(chunk)
            grid_in.close()
        except BaseException:
            # BaseException too: a Celery time limit or a worker shutdown
            # mid-upload must not leave orphan chunks behind.
            self._abort_upload(grid_in)
            raise

        if previous_version_ids:
            # Only now that the new version is complete: a failed upload
            # must never cost us the old file.
            self._delete_versions(previous_version_ids)

        return name

    def delete(self, name: str) -> None:
        self._delete_versions(self._version_ids(name))

    def exists(self, name: str) -> bool:
        # The files document is written last, so a half-finished upload does
        # not count as existing.
        return self.files_collection.find_one({"filename": name}, {"_id": 1}) is not None

    def is_name_available(self, name: str, max_length: int | None = None) -> bool:
        if self.file_overwrite:
            return not (max_length and len(name) > max_length)
        return super().is_name_available(name, max_length=max_length)

    def get_alternative_name(self, file_root: str, file_ext: str) -> str:
        # With overwrite on, only truncation (for max_length) may change the
        # name, same as FileSystemStorage(allow_overwrite=True).
        if self.file_overwrite:
            return f"{file_root}{file_ext}"
        return super().get_alternative_name(file_root, file_ext)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        """
        Best effort: GridFS has no directories, so treat "/" in filenames as
        separators and list what sits directly under ``path``.
        """
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        filenames = self.files_collection.distinct(
            "filename",
            # Anchored prefix regexes can use the (filename, uploadDate) index.
            {"filename": {"$regex": f"^{re.escape(prefix)}"}},
        )

        directories: set[str] = set()
        files: set[str] = set()
        for filename in filenames:
            remainder = filename[len(prefix) :]
            head, separator, _ = remainder.partition("/")
            if separator:
                directories.add(head)
            elif remainder:
                files.add(remainder)
        return sorted(directories), sorted(files)

    def size(self, name: str) -> int:
        return int(self._require_latest_file_document(name)["length"])

    def url(self, name: str | None) -> str:
        raise NotImplementedError("files are served by the download view")

    def get_created_time(self, name: str) -> datetime:
        # A GridFS version is immutable: its upload is both its creation and
        # its last modification.
        return self._as_django_datetime(self._require_latest_file_document(name)["uploadDate"])

    def get_modified_time(self, name: str) -> datetime:
        return self._as_django_datetime(self._require_latest_file_document(name)["uploadDate"])

    # Helpers.

    def _latest_file_document(self, name: str) -> dict[str, Any] | None:
        # uploadDate has millisecond precision; _id breaks ties so "latest"
        # is deterministic when two versions land in the same millisecond.
        return self.files_collection.find_one(
            {"filename": name},
            sort=[("uploadDate", -1), ("_id", -1)],
        )

    def _require_latest_file_document(self, name: str) -> dict[str, Any]:
        file_document = self._latest_file_document(name)
        if file_document is None:
            raise FileNotFoundError(f"No GridFS file named {name!r}.")
        return file_document

    def _version_ids(self, name: str) -> list[Any]:
        return [
            file_document["_id"]
            for file_document in self.files_collection.find({"filename": name}, {"_id": 1})
        ]

    def _delete_versions(self, file_ids: list[Any]) -> None:
        # Same order as GridFSBucket.delete_by_name: files documents first,
        # so readers stop seeing the file before its chunks disappear.
        # Done by hand because bucket.delete()/delete_by_name() don't run
        # under mongomock (they read client.options.timeout), and
        # delete_by_name() raises when nothing matches.
        if not file_ids:
            return
        self.files_collection.delete_many({"_id": {"$in": file_ids}})
        self.chunks_collection.delete_many({"files_id": {"$in": file_ids}})

    def _abort_upload(self, grid_in: GridIn) -> None:
        # Never let a failing cleanup (e.g. the server went away) mask the
        # error that made us abort in the first place.
        try:
            grid_in.abort()
        except Exception:
            logger.exception("Could not abort GridFS upload of %r", grid_in.filename)

    def _as_django_datetime(self, value: datetime) -> datetime:
        # pymongo returns naive UTC datetimes unless the client is tz_aware;
        # the shared client is left as-is for other users.
        if timezone.is_naive(value):
            value = value.replace(tzinfo=dt_timezone.utc)
        if settings.USE_TZ:
            return value.astimezone(dt_timezone.utc)
        return timezone.make_naive(value)
