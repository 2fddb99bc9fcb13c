"""What every shared storage has in common: the errors that mean "the store failed", and read-only stored files.

Files are never served from a public URL: the download views stream them, so the storages' ``url()`` raises.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files import File
from django.core.files.storage import default_storage
from pymongo.errors import PyMongoError

# What the storages raise when the store itself fails (a full or read-only disk, MongoDB or S3 unreachable or refusing),
# as opposed to a bug: worth a retry in a task, a 503 at upload.
STORAGE_ERRORS = (OSError, PyMongoError, BotoCoreError, ClientError)

# Stored files are immutable blobs with no text layer: "r" also yields bytes.
READ_MODES = ("r", "rb")


class ReadOnlyStoredFile(File):
    """A stored file opened for reading from a remote store; `_stream()` opens a fresh stream of its content."""

    def _stream(self):
        raise NotImplementedError

    def open(self, mode: str | None = None, *args: Any, **kwargs: Any):
        # File.open() would reopen a closed file from the local filesystem;
        # FieldFile.open() relies on this after a `with` block closed it.
        if mode not in (None, *READ_MODES):
            raise ValueError(f"Stored files can only be opened for reading, not {mode!r}.")
        if self.closed:
            self.file = self._stream()
        else:
            self.seek(0)
        return self


def store_replacing(path, name: str) -> str:
    """Store the local file at `path` under `name` in the file store, replacing what a crashed earlier attempt may
    have left there; returns the name it got. A write that fails part-way leaves no partial file behind."""
    default_storage.delete(name)
    try:
        with open(path, "rb") as local:
            return default_storage.save(name, File(local, name=name))
    except Exception:
        default_storage.delete(name)
        raise
