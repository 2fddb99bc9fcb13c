"""Resumable uploads' service (conversions/services/resumable.py) on each store: the last byte makes a conversion whose
source is the stored bytes (no copy left behind), and a refused one leaves nothing. The workers' part is tested end to
end in tests/conversions/api/test_tus.py; here on_commit never fires under `db`, so nothing is published."""

import os
import tempfile
from collections.abc import Iterator

import pytest
from django.core.files.storage import default_storage

from conversions import engine
from conversions.models import Conversion, ResumableUpload
from conversions.services import resumable_upload_append, resumable_upload_create
from tests.utils import partial_uploads

pytestmark = [pytest.mark.django_db]




def pieces(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def probe_copies() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("mp3converter-upload-")}


def send(upload: ResumableUpload, data: bytes, *, start: int, end: int):
    return resumable_upload_append(upload=upload, offset=start, chunks=pieces(data[start:end]), declared=end - start)


def test_the_last_byte_makes_a_conversion_of_the_stored_bytes(store, user, media):
    data = media("mp4_aac").read_bytes()
    copies_before, partials_before = probe_copies(), partial_uploads()
    upload = resumable_upload_create(
        owner=user, length=len(data), filename="clip.mp4", options=engine.OutputOptions(bitrate_kbps=128)
    )
    assert send(upload, data, start=0, end=len(data) // 3) is None
    conversion = send(upload, data, start=len(data) // 3, end=len(data))

    assert isinstance(conversion, Conversion) and conversion.pk == upload.conversion_id
    assert conversion.status == Conversion.Status.QUEUED
    assert (conversion.original_filename, conversion.source_size) == ("clip.mp4", len(data))
    assert conversion.options == {"bitrate_kbps": 128, "title": "clip"}
    assert conversion.source.name == f"sources/{conversion.pk}"
    with default_storage.open(conversion.source.name, "rb") as stored:
        assert stored.read() == data
    assert ResumableUpload.objects.get().completed_at is not None
    assert probe_copies() == copies_before
    if store == "folder":
        assert partial_uploads() == partials_before


def test_a_refused_upload_leaves_nothing(store, user, s3_server):
    data = b"plain text, not a video\n" * 2000
    partials_before = partial_uploads()
    upload = resumable_upload_create(owner=user, length=len(data), filename="notes.mp4",
                                     options=engine.OutputOptions())
    with pytest.raises(engine.UnsupportedMedia):
        send(upload, data, start=0, end=len(data))
    assert not ResumableUpload.objects.exists() and not Conversion.objects.exists()
    assert not default_storage.exists(f"sources/{upload.conversion_id}")
    if store == "folder":
        assert partial_uploads() == partials_before
    elif store == "gridfs":
        assert default_storage.chunks_collection.count_documents({}) == 0
        assert default_storage.files_collection.count_documents({}) == 0
    else:
        prefix = default_storage.location
        assert s3_server.keys(s3_server.bucket, f"{prefix}/") == []
        assert s3_server.unfinished_uploads(s3_server.bucket, f"{prefix}/") == []
