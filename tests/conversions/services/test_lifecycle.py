"""conversions.services.lifecycle against the real database, the real ffmpeg (no workers) and real storages:
create, mark failed, delete, retry."""

import uuid

import pytest
from django.core.files.storage import default_storage
from kombu.exceptions import OperationalError as BrokerError

from conversions import engine
from conversions.models import Conversion
from conversions.services import (
    conversion_convert,
    conversion_create,
    conversion_delete,
    conversion_mark_failed,
    conversion_retry,
    lifecycle,
)
from mp3converter.errors import InternalError, QueueUnavailable, ServiceError
from tests.conversions.services.helpers import stored, uploaded
from tests.factories import ConversionFactory, DeliveryFactory
from tests.utils import jobs

Status = Conversion.Status


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

    def refuse(*, conversion_id, attempt, fetch=False):
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

    def record(*, conversion_id, attempt, fetch=False):
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


# --- conversion_mark_failed ------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [Status.QUEUED, Status.PROCESSING])
def test_mark_failed_fails_unfinished_jobs(db, user, status):
    conversion = ConversionFactory(owner=user, status=status)
    assert conversion_mark_failed(conversion_id=conversion.id, error=engine.ConversionTimeout("Too slow.", detail="ffmpeg"))
    row = Conversion.objects.get(pk=conversion.pk)
    assert (row.status, row.error_code, row.error_message) == (Status.FAILED, "timeout", "Too slow.")
    assert row.error_detail == "ffmpeg"
    assert row.finished_at is not None


@pytest.mark.parametrize("status", [Status.DONE, Status.FAILED])
def test_mark_failed_does_not_regress_finished_jobs(db, user, status):
    error_code = "corrupt_media" if status == Status.FAILED else ""
    conversion = ConversionFactory(owner=user, status=status, error_code=error_code)
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
    conversion = ConversionFactory(owner=user, status=Status.FAILED)
    conversion_delete(conversion=conversion)
    assert not Conversion.objects.filter(pk=conversion.pk).exists()


# --- conversion_retry ------------------------------------------------------------------------------------------
def test_retry_requeues_a_failed_job(db, user, monkeypatch, django_capture_on_commit_callbacks):
    published = []
    monkeypatch.setattr(lifecycle, "conversion_enqueue", lambda *, conversion_id, attempt, fetch=False: published.append((conversion_id, attempt)))
    conversion = ConversionFactory(owner=user, options={"vbr_quality": 2})
    conversion_mark_failed(conversion_id=conversion.id, error=InternalError("Oops.", detail="trace"))
    # The owner was told about the failed attempt 1.
    DeliveryFactory(conversion=conversion)
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
    monkeypatch.setattr(lifecycle, "conversion_enqueue", lambda *, conversion_id, attempt, fetch=False: published.append((conversion_id, attempt)))
    conversion = ConversionFactory(owner=user, status=status)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert not conversion_retry(conversion=conversion)
    assert callbacks == [] and published == []
    assert Conversion.objects.get(pk=conversion.pk).status == status
