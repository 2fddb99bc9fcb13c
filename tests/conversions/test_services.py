"""conversions.services against the real database, the real ffmpeg (no workers) and real storages: the tests that
store files run once with the folder storage and once with S3 (moto's server)."""

import io
import shutil
import uuid
from contextlib import contextmanager

import pytest
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import TemporaryUploadedFile
from kombu.exceptions import OperationalError as BrokerError

from conversions import engine
from conversions.filenames import clean_filename
from conversions.models import Conversion
from conversions.services import (
    conversion_convert,
    conversion_create,
    conversion_delete,
    conversion_mark_failed,
    conversion_retry,
    lifecycle,
)
from conversions.storage import S3Storage
from mp3converter.errors import InternalError, QueueUnavailable, ServiceError
from notifications.models import Delivery
from tests.media import decoded_duration, probe_output
from tests.utils import jobs

Status = Conversion.Status


# --- helpers ---------------------------------------------------------------------------------------------------
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


@pytest.fixture(params=["folder", "s3"])
def storage(request):
    """Where this test's files go: the default folder, or S3 (a fresh key prefix of moto's server)."""
    if request.param == "s3":
        request.getfixturevalue("files_in_s3")
        assert isinstance(default_storage, S3Storage)
    return request.param


@pytest.fixture
def queued(storage, user, media):
    """A queued job made by conversion_create (on_commit never fires under `db`, so nothing is published)."""
    made = []

    def make(spec="mp4_aac", **options):
        with uploaded(media(spec)) as upload:
            conversion = conversion_create(owner=user, upload=upload, options=engine.OutputOptions(**options))
        made.append(conversion)
        return conversion

    yield make
    for conversion in made:
        default_storage.delete(conversion.source.name)
        for name in mp3_files_of(conversion.id):
            default_storage.delete(f"mp3/{name}")


# --- conversion_create -----------------------------------------------------------------------------------------
def test_create_stores_the_source_and_queues_the_job(db, user, media, queued):
    conversion = queued("mkv_opus", bitrate_kbps=192)
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.QUEUED
    assert row.owner == user
    assert row.original_filename == "clip.mkv"
    assert row.options == {"bitrate_kbps": 192, "title": "clip"}  # the title defaults to the file name's stem
    assert row.source_size == media("mkv_opus").stat().st_size
    assert row.source.name == f"sources/{row.id}"  # the user's file name never reaches the storage
    with default_storage.open(row.source.name) as source:
        assert source.read() == media("mkv_opus").read_bytes()


def test_create_cleans_the_display_name(db, user, media, queued):
    with uploaded(media("mp4_aac"), name="../../etc/passwd.mp4") as upload:
        conversion = conversion_create(owner=user, upload=upload, options=engine.OutputOptions())
    try:
        assert Conversion.objects.get(pk=conversion.pk).original_filename == "passwd.mp4"
    finally:
        default_storage.delete(conversion.source.name)


@pytest.mark.parametrize(("spec", "error"), [("mp4_noaudio", engine.NoAudioStream), ("text", engine.UnsupportedMedia)])
def test_create_refuses_unusable_media_and_keeps_nothing(storage, db, user, media, spec, error):
    before = stored("sources")
    with uploaded(media(spec)) as upload, pytest.raises(error):
        conversion_create(owner=user, upload=upload, options=engine.OutputOptions())
    assert Conversion.objects.count() == 0
    assert stored("sources") == before


def test_create_with_a_broker_that_refuses(storage, transactional_db, user, media, monkeypatch):
    published = []

    def refuse(*, conversion_id, attempt):
        published.append(conversion_id)
        raise BrokerError("[Errno 111] Connection refused")

    monkeypatch.setattr(lifecycle, "conversion_enqueue", refuse)
    before = stored("sources")
    with uploaded(media("mp4_aac")) as upload, pytest.raises(QueueUnavailable):
        conversion_create(owner=user, upload=upload, options=engine.OutputOptions())
    assert len(published) == 1  # the hook ran after the commit ...
    assert not Conversion.objects.filter(pk=published[0]).exists()  # ... and the committed row was undone
    assert Conversion.objects.count() == 0
    assert stored("sources") == before


def test_create_publishes_after_commit(storage, transactional_db, user, media, monkeypatch):
    published = []

    def record(*, conversion_id, attempt):
        # By the time the job is published its row must be visible to a worker.
        assert Conversion.objects.filter(pk=conversion_id, status=Status.QUEUED).exists()
        published.append(conversion_id)

    monkeypatch.setattr(lifecycle, "conversion_enqueue", record)
    with uploaded(media("mp4_aac")) as upload:
        conversion = conversion_create(owner=user, upload=upload, options=engine.OutputOptions())
    try:
        assert published == [conversion.id]
    finally:
        default_storage.delete(conversion.source.name)


# --- conversion_convert ----------------------------------------------------------------------------------------
def test_convert_makes_the_mp3(db, queued, tmp_path):
    conversion = queued("mp4_aac")
    conversion_convert(conversion_id=conversion.id)
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.DONE
    assert row.mp3.name == f"mp3/{row.id}-1.mp3"
    assert row.mp3_size == default_storage.size(row.mp3.name)
    assert row.duration_seconds == pytest.approx(2.0, abs=0.1)
    assert row.started_at is not None and row.finished_at >= row.started_at
    assert (row.error_code, row.error_message) == ("", "")
    local = tmp_path / "out.mp3"
    with default_storage.open(row.mp3.name) as mp3:
        local.write_bytes(mp3.read())
    assert probe_output(local)["audio"][0]["codec"] == "mp3"
    assert decoded_duration(local) == pytest.approx(2.0, abs=0.1)


def test_convert_again_on_a_done_job_does_nothing(db, queued):
    conversion = queued("wav")
    conversion_convert(conversion_id=conversion.id)
    name = Conversion.objects.get(pk=conversion.pk).mp3.name
    before = (default_storage.get_modified_time(name), default_storage.size(name))
    finished_at = Conversion.objects.get(pk=conversion.pk).finished_at

    conversion_convert(conversion_id=conversion.id)
    conversion_convert(conversion_id=str(conversion.id))
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.DONE
    assert row.finished_at == finished_at
    assert (default_storage.get_modified_time(name), default_storage.size(name)) == before
    assert mp3_files_of(conversion.id) == [f"{conversion.id}-1.mp3"]


def test_redelivered_job_replaces_a_half_stored_mp3(db, queued):
    # A worker died after storing the MP3 but before recording it; the message comes back with the job processing.
    conversion = queued("wav")
    default_storage.save(f"mp3/{conversion.id}-1.mp3", io.BytesIO(b"left over by a crashed attempt"))
    Conversion.objects.filter(pk=conversion.pk).update(status=Status.PROCESSING)

    conversion_convert(conversion_id=conversion.id)
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.DONE
    assert mp3_files_of(conversion.id) == [f"{conversion.id}-1.mp3"]
    assert row.mp3.name == f"mp3/{conversion.id}-1.mp3"
    assert default_storage.size(row.mp3.name) == row.mp3_size > 1000


def test_convert_of_a_deleted_job_stores_nothing(db, queued):
    conversion = queued("mp4_aac")
    Conversion.objects.filter(pk=conversion.pk).delete()
    conversion_convert(conversion_id=conversion.id)
    conversion_convert(conversion_id=uuid.uuid4())
    assert mp3_files_of(conversion.id) == []


def test_job_deleted_while_converting_leaves_no_mp3(db, queued, monkeypatch):
    conversion = queued("mp4_aac")
    real_convert = engine.convert

    def convert_then_user_deletes(*args, **kwargs):
        result = real_convert(*args, **kwargs)
        conversion_delete(conversion=Conversion.objects.get(pk=conversion.pk))  # the owner deletes it meanwhile
        return result

    monkeypatch.setattr(engine, "convert", convert_then_user_deletes)
    conversion_convert(conversion_id=conversion.id)
    assert not Conversion.objects.filter(pk=conversion.pk).exists()
    assert mp3_files_of(conversion.id) == []
    assert not default_storage.exists(conversion.source.name)


@pytest.mark.parametrize(
    ("spec", "code"), [("mp4_noaudio", "no_audio_stream"), ("truncated_faststart_mp4", "corrupt_media")]
)
def test_convert_of_bad_media_fails_the_job(storage, db, user, media, spec, code):
    # Made directly: conversion_create would already refuse a file without audio.
    conversion = Conversion(owner=user, original_filename="x.mp4", options={"vbr_quality": 2})
    with media(spec, duration=6.0).open("rb") as source:
        conversion.source.save("x", File(source), save=False)
    conversion.save()
    try:
        conversion_convert(conversion_id=conversion.id)
        row = Conversion.objects.get(pk=conversion.pk)
        assert row.status == Status.FAILED
        assert row.error_code == code
        assert row.error_message
        assert not row.mp3
        assert mp3_files_of(conversion.id) == []
    finally:
        default_storage.delete(conversion.source.name)


# --- conversion_mark_failed ------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [Status.QUEUED, Status.PROCESSING])
def test_mark_failed_fails_unfinished_jobs(db, user, status):
    conversion = Conversion.objects.create(owner=user, original_filename="a.mp4", status=status)
    assert conversion_mark_failed(conversion_id=conversion.id, error=engine.ConversionTimeout("Too slow.", detail="ffmpeg"))
    row = Conversion.objects.get(pk=conversion.pk)
    assert (row.status, row.error_code, row.error_message) == (Status.FAILED, "timeout", "Too slow.")
    assert row.error_detail == "ffmpeg"
    assert row.finished_at is not None


@pytest.mark.parametrize("status", [Status.DONE, Status.FAILED])
def test_mark_failed_does_not_regress_finished_jobs(db, user, status):
    error_code = "corrupt_media" if status == Status.FAILED else ""
    conversion = Conversion.objects.create(owner=user, original_filename="a.mp4", status=status, error_code=error_code)
    assert not conversion_mark_failed(conversion_id=conversion.id, error=engine.ConversionTimeout("Too slow."))
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == status
    assert row.error_code == error_code
    assert not conversion_mark_failed(conversion_id=uuid.uuid4(), error=ServiceError("gone"))


# --- conversion_delete -----------------------------------------------------------------------------------------
def test_delete_removes_the_row_and_both_files(db, queued):
    conversion = queued("mp4_aac")
    conversion_convert(conversion_id=conversion.id)
    row = Conversion.objects.get(pk=conversion.pk)
    names = [row.source.name, row.mp3.name]
    assert all(default_storage.exists(name) for name in names)
    conversion_delete(conversion=row)
    assert not Conversion.objects.filter(pk=conversion.pk).exists()
    assert not any(default_storage.exists(name) for name in names)


def test_delete_of_a_job_without_files(db, user):
    conversion = Conversion.objects.create(owner=user, original_filename="clip.mp4", status=Status.FAILED)
    conversion_delete(conversion=conversion)
    assert not Conversion.objects.filter(pk=conversion.pk).exists()


# --- conversion_retry ------------------------------------------------------------------------------------------
def test_retry_requeues_a_failed_job(db, user, monkeypatch, django_capture_on_commit_callbacks):
    published = []
    monkeypatch.setattr(lifecycle, "conversion_enqueue", lambda *, conversion_id, attempt: published.append((conversion_id, attempt)))
    conversion = Conversion.objects.create(owner=user, original_filename="a.mp4", options={"vbr_quality": 2})
    conversion_mark_failed(conversion_id=conversion.id, error=InternalError("Oops.", detail="trace"))
    # The owner was told about the failed attempt 1.
    Delivery.objects.create(conversion=conversion, channel="email", attempt=1, state=Delivery.State.DELIVERED,
                            delivered_at=conversion.created_at)
    assert jobs().get(pk=conversion.pk).notified_at is not None

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert conversion_retry(conversion=conversion)
    assert len(callbacks) == 1
    assert published == [(conversion.pk, 2)]  # a new attempt: stale messages of attempt 1 change nothing
    row = jobs().get(pk=conversion.pk)
    assert row.status == Status.QUEUED
    assert row.attempt == 2
    assert (row.error_code, row.error_message, row.error_detail) == ("", "", "")
    assert row.started_at is None and row.finished_at is None and row.notified_at is None


@pytest.mark.parametrize("status", [Status.QUEUED, Status.PROCESSING, Status.DONE])
def test_retry_leaves_other_jobs_alone(db, user, monkeypatch, django_capture_on_commit_callbacks, status):
    published = []
    monkeypatch.setattr(lifecycle, "conversion_enqueue", lambda *, conversion_id, attempt: published.append((conversion_id, attempt)))
    conversion = Conversion.objects.create(owner=user, original_filename="a.mp4", status=status)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert not conversion_retry(conversion=conversion)
    assert callbacks == [] and published == []
    assert Conversion.objects.get(pk=conversion.pk).status == status
