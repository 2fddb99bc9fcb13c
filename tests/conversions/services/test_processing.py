"""conversions.services.processing: the conversion as the worker runs it, in-process, with the real ffmpeg and
real storages."""

import io
import uuid
from pathlib import Path

from datetime import timedelta

import pytest
from django.core.files import File
from django.core.files.storage import default_storage
from django.utils import timezone

from conversions import engine
from conversions.models import Conversion
from conversions.services import (
    ProgressReporter,
    conversion_convert,
    conversion_delete,
)
from conversions.services.processing import Heartbeat, heartbeat_interval
from tests.conversions.services.helpers import mp3_files_of
from tests.factories import ConversionFactory
from tests.media import decoded_duration, probe_output
from tests.utils import wait_for

Status = Conversion.Status


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


def test_convert_reads_a_local_source_in_place_and_copies_a_remote_one(db, queued, storage, monkeypatch):
    # A 2 GB upload in the local folder is not copied just to be read; GridFS and S3 have no local path.
    conversion = queued("mp4_aac")
    read_from = []
    real_convert = engine.convert

    def spy(source, target, **kwargs):
        read_from.append(source)
        return real_convert(source, target, **kwargs)

    monkeypatch.setattr(engine, "convert", spy)
    conversion_convert(conversion_id=conversion.id)
    assert Conversion.objects.get(pk=conversion.pk).status == Status.DONE
    if storage == "folder":
        assert read_from == [Path(default_storage.path(conversion.source.name))]
    else:
        assert read_from[0].name == "source"  # the copy, in the job's own folder (gone with it)
        assert not read_from[0].exists()


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

    conversion_convert(conversion_id=conversion.id, redelivered=True)
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
    conversion = ConversionFactory.build(owner=user, original_filename="x.mp4", options={"vbr_quality": 2})
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




# --- claims and heartbeats ---------------------------------------------------------------------------------------
def test_a_duplicate_message_leaves_a_job_another_worker_converts_alone(db, queued):
    # The reconciler published a queued job again while its first message was held by a worker that has claimed it.
    conversion = queued("wav")
    claimed_at = timezone.now() - timedelta(seconds=3)
    Conversion.objects.filter(pk=conversion.pk).update(status=Status.PROCESSING, started_at=claimed_at,
                                                       heartbeat_at=claimed_at, progress=40)
    conversion_convert(conversion_id=conversion.id, attempt=1)
    row = Conversion.objects.get(pk=conversion.pk)
    assert (row.status, row.progress, row.started_at, row.heartbeat_at) == (Status.PROCESSING, 40, claimed_at,
                                                                            claimed_at)
    assert mp3_files_of(conversion.id) == []
    # The message that was running it, handed back by the broker or retried by its task, takes it over.
    conversion_convert(conversion_id=conversion.id, attempt=1, retrying=True)
    assert Conversion.objects.get(pk=conversion.pk).status == Status.DONE


def test_the_claim_and_the_progress_write_the_heartbeat(db, queued, monkeypatch):
    conversion = queued("wav")
    beats = []
    real_convert = engine.convert

    def watching(*args, on_progress, **kwargs):
        beats.append(Conversion.objects.get(pk=conversion.pk).heartbeat_at)  # written by the claim
        return real_convert(*args, on_progress=on_progress, **kwargs)

    monkeypatch.setattr(engine, "convert", watching)
    before = timezone.now()
    conversion_convert(conversion_id=conversion.id)
    assert beats[0] is not None and beats[0] >= before
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.DONE and row.heartbeat_at >= beats[0]


def test_the_heartbeat_goes_on_while_the_work_reports_no_progress(transactional_db, media, monkeypatch, settings):
    # A worker (autocommit, as here) that is copying, probing or cutting the cover picture for longer than
    # STALE_JOB_SECONDS says nothing about progress meanwhile: its heartbeat must go on, or the reconciler would
    # take the job for lost.
    settings.STALE_JOB_SECONDS = 4  # a heartbeat every second
    with media("wav").open("rb") as source:
        name = default_storage.save(f"sources/{uuid.uuid4()}.wav", File(source))
    conversion = ConversionFactory(source=name)
    real_convert = engine.convert
    seen = []

    def silent(*args, on_progress, **kwargs):
        claimed = Conversion.objects.get(pk=conversion.pk).heartbeat_at
        seen.append(wait_for(lambda: Conversion.objects.get(pk=conversion.pk).heartbeat_at > claimed, timeout=15,
                             message="a heartbeat while no progress is reported"))
        return real_convert(*args, on_progress=on_progress, **kwargs)

    monkeypatch.setattr(engine, "convert", silent)
    try:
        conversion_convert(conversion_id=conversion.id)
        row = Conversion.objects.get(pk=conversion.pk)
        assert seen and row.status == Status.DONE
    finally:
        default_storage.delete(name)
        for mp3 in mp3_files_of(conversion.id):
            default_storage.delete(f"mp3/{mp3}")


def test_the_heartbeat_thread_stops_once_the_job_is_not_this_attempts(transactional_db, settings):
    settings.STALE_JOB_SECONDS = 4
    conversion = ConversionFactory(status=Status.PROCESSING, heartbeat_at=timezone.now() - timedelta(minutes=5))
    with Heartbeat(conversion.id, 1) as heartbeat:
        wait_for(lambda: Conversion.objects.get(pk=conversion.pk).heartbeat_at > timezone.now() - timedelta(minutes=1),
                 timeout=15, message="the first heartbeat")
        Conversion.objects.filter(pk=conversion.pk).update(status=Status.QUEUED, attempt=2)  # the reconciler's
        wait_for(lambda: not heartbeat.thread.is_alive(), timeout=15, message="the heartbeat to stop by itself")
    assert Conversion.objects.get(pk=conversion.pk).attempt == 2


def test_no_heartbeat_thread_inside_a_transaction(db, queued):
    # Another connection could not see an uncommitted claim, and would wait on its row lock.
    conversion = queued("wav")
    with Heartbeat(conversion.id, 1) as heartbeat:
        assert not heartbeat.thread.is_alive()


def test_progress_carries_the_heartbeat_at_most_every_few_seconds(db, queued, settings):
    conversion = queued("wav")
    Conversion.objects.filter(pk=conversion.pk).update(status=Status.PROCESSING, heartbeat_at=None)
    settings.STALE_JOB_SECONDS = 120
    assert heartbeat_interval() == 5.0
    settings.STALE_JOB_SECONDS = 8
    assert heartbeat_interval() == 2.0  # well inside a short staleness limit

    reporter = ProgressReporter(conversion.id, 1, interval=0)
    reporter(10)
    row = Conversion.objects.get(pk=conversion.pk)
    assert (row.progress, row.heartbeat_at) == (10, None)  # progress, and no heartbeat yet: the claim wrote one
    reporter.last_beat -= reporter.beat_interval  # the heartbeat interval has passed
    reporter(20)
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.progress == 20 and row.heartbeat_at is not None
    first_beat = row.heartbeat_at
    reporter(30)
    row = Conversion.objects.get(pk=conversion.pk)
    assert (row.progress, row.heartbeat_at) == (30, first_beat)  # progress every time, the heartbeat not


def test_a_requeued_attempt_stops_the_old_workers_progress(db, queued):
    conversion = queued("wav")
    Conversion.objects.filter(pk=conversion.pk).update(status=Status.PROCESSING)
    reporter = ProgressReporter(conversion.id, 1, interval=0)
    reporter(5)
    # The reconciler took the job for lost and queued it again as attempt 2.
    Conversion.objects.filter(pk=conversion.pk).update(status=Status.QUEUED, attempt=2)
    with pytest.raises(engine.ConversionCancelled):
        reporter(50)
    conversion_convert(conversion_id=conversion.id, attempt=1, redelivered=True)
    row = Conversion.objects.get(pk=conversion.pk)
    assert (row.status, row.attempt, row.progress, row.redeliveries) == (Status.QUEUED, 2, 5, 0)
