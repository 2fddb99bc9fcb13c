"""What the service tests share: uploads as Django's handler makes them, and what the storage holds."""

import shutil
from contextlib import contextmanager

from django.core.files.storage import default_storage
from django.core.files.uploadedfile import TemporaryUploadedFile


@contextmanager
def uploaded(path, name=None):
    """An UploadedFile as Django's temp-file upload handler makes it, filled from a generated media file."""
    upload = TemporaryUploadedFile(name or path.name, "application/octet-stream", path.stat().st_size, None)
    with path.open("rb") as source:
        shutil.copyfileobj(source, upload.file)
    upload.file.flush()
    upload.seek(0)
    try:
        yield upload
    finally:
        upload.close()


def stored(folder: str) -> set[str]:
    try:
        return set(default_storage.listdir(folder)[1])
    except FileNotFoundError:  # a folder not made yet; S3 has no folders and lists nothing instead
        return set()


def mp3_files_of(conversion_id) -> list[str]:
    """Every file in mp3/ that belongs to this job (alternative names like <id>_AbC123.mp3 included)."""
    return sorted(name for name in stored("mp3") if name.startswith(str(conversion_id)))
