"""The Celery task wrappers, run in-process with Task.apply() (local execution; retries are re-applied locally); and
the retention sweep's task as the workers' timer publishes it, with a real notify worker."""

import logging
import os
import uuid
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from celery import states
from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import OperationalError
from django.utils import timezone

from conversions import engine, services
from conversions.filenames import source_name
from conversions.models import Conversion
from conversions.services import retention
from conversions.tasks import CONVERT_MAX_RETRIES, convert_video_task
from tests.factories import ConversionFactory, DoneConversionFactory
from tests.fixtures.workers import start_workers, stop_workers
from tests.utils import wait_for

Status = Conversion.Status


@pytest.fixture
def job(user, media):
    """A queued job with a real stored source."""
    made = []

    def make(spec="mp4_aac"):
        conversion = ConversionFactory.build(owner=user, original_filename="clip.mp4", options={"vbr_quality": 2})
        with media(spec, duration=6.0).open("rb") as source:
            conversion.source.save("ignored", File(source), save=False)
        conversion.save()
        made.append(conversion)
        return conversion

    yield make
    for conversion in made:
        default_storage.delete(conversion.source.name)
        default_storage.delete(f"mp3/{conversion.id}-1.mp3")


@pytest.fixture
def attempts(monkeypatch):
    """Replace the service with `behaviour`; record each attempt's retry count and the job's status at that point."""
    seen: list[tuple[int, str]] = []

    def install(behaviour):
        def service(*, conversion_id, attempt=None, redelivered=False, retrying=False):
            seen.append((convert_video_task.request.retries, Conversion.objects.get(pk=conversion_id).status))
            return behaviour(conversion_id=conversion_id, attempt=len(seen))

        monkeypatch.setattr(services, "conversion_convert", service)
        return seen

    return install


def test_transient_error_is_retried_and_the_retry_converts(db, job, attempts):
    conversion = job("mp4_aac")
    real_convert = services.conversion_convert

    def flaky(*, conversion_id, attempt):
        if attempt == 1:
            raise OSError(5, "storage hiccup")
        return real_convert(conversion_id=conversion_id)

    seen = attempts(flaky)
    result = convert_video_task.apply(args=[str(conversion.id)])
    assert result.state == states.SUCCESS
    assert seen == [(0, Status.QUEUED), (1, Status.QUEUED)]  # a second delivery, with request.retries = 1
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.DONE
    assert row.mp3.name == f"mp3/{conversion.id}-1.mp3"


S3_UNREACHABLE = EndpointConnectionError(endpoint_url="http://s3.example.com/files/sources/clip")
S3_THROTTLED = ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "GetObject")


@pytest.mark.parametrize(
    "error", [OSError("disk gone"), OperationalError("server has gone away"), S3_UNREACHABLE, S3_THROTTLED]
)
def test_transient_errors_fail_the_job_after_max_retries(db, job, attempts, error):
    conversion = job("mp4_aac")

    def always_fails(*, conversion_id, attempt):
        Conversion.objects.filter(pk=conversion_id).update(status=Status.PROCESSING)  # as the real claim does
        raise error

    seen = attempts(always_fails)
    result = convert_video_task.apply(args=[str(conversion.id)])
    assert result.state == states.SUCCESS
    assert [retries for retries, _ in seen] == list(range(CONVERT_MAX_RETRIES + 1))
    # The job stayed in progress through every retry and failed only after the last one.
    assert [status for _, status in seen] == [Status.QUEUED] + [Status.PROCESSING] * CONVERT_MAX_RETRIES
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.FAILED
    assert row.error_code == "internal_error"
    assert "our side" in row.error_message
    assert type(error).__name__ in row.error_detail


def test_soft_time_limit_fails_the_job_with_timeout(db, job, attempts):
    conversion = job("mp4_aac")

    def too_slow(*, conversion_id, attempt):
        Conversion.objects.filter(pk=conversion_id).update(status=Status.PROCESSING)
        raise SoftTimeLimitExceeded()

    seen = attempts(too_slow)
    result = convert_video_task.apply(args=[str(conversion.id)])
    assert result.state == states.SUCCESS
    assert len(seen) == 1  # not retried
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.FAILED
    assert row.error_code == "timeout"
    assert row.error_message == engine.ConversionTimeout.message


def test_media_error_fails_the_job_without_retrying(db, job, attempts):
    conversion = job("truncated_faststart_mp4")
    real_convert = services.conversion_convert
    seen = attempts(lambda *, conversion_id, attempt: real_convert(conversion_id=conversion_id))
    result = convert_video_task.apply(args=[str(conversion.id)])
    assert result.state == states.SUCCESS
    assert len(seen) == 1
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.FAILED
    assert row.error_code == "corrupt_media"
    assert not row.mp3


def test_task_for_a_deleted_job_does_nothing(db, job):
    conversion = job("mp4_aac")
    Conversion.objects.filter(pk=conversion.pk).delete()
    result = convert_video_task.apply(args=[str(conversion.id)])
    assert result.state == states.SUCCESS
    assert not default_storage.exists(f"mp3/{conversion.id}-1.mp3")


def test_unexpected_error_fails_the_job_instead_of_leaving_it_processing(db, job, attempts):
    conversion = job("mp4_aac")

    def bug(*, conversion_id, attempt):
        Conversion.objects.filter(pk=conversion_id).update(status=Status.PROCESSING)
        raise ValueError("a bug, not bad media")

    seen = attempts(bug)
    convert_video_task.apply(args=[str(conversion.id)])
    assert len(seen) == 1  # a bug is not retried
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.FAILED  # so the owner is told, and conversion_retry can requeue it
    assert row.error_code == "internal_error"
    assert "ValueError" in row.error_detail


def test_a_retry_keeps_the_reconciler_away_until_it_runs(db, job, attempts):
    conversion = job("mp4_aac")
    heartbeats = []

    def flaky(*, conversion_id, attempt):
        heartbeats.append(Conversion.objects.get(pk=conversion_id).heartbeat_at)
        if attempt == 1:
            Conversion.objects.filter(pk=conversion_id).update(status=Status.PROCESSING, heartbeat_at=timezone.now())
            raise OSError(5, "storage hiccup")

    attempts(flaky)
    failed_at = timezone.now()
    convert_video_task.apply(args=[str(conversion.id), 1])
    # Before the retry ran, the job's heartbeat was set to when the retry is due (10 s after the failure).
    assert heartbeats[1] >= failed_at + timedelta(seconds=9)


FORGED_IDS = ["not-a-uuid", "x\nlevel=ERROR job=forged pid=1 injected", "9" * 5000, 42, None, ["a"], {"id": 1}]
FORGED_ATTEMPTS = ["1", 1.5, True, -1, 0, 10**40, [1]]


@pytest.mark.parametrize(
    "args", [[forged, 1] for forged in FORGED_IDS] + [["6f1c8a1e-3f7e-4ad8-9c43-0a4c1d1f2b3c", forged]
                                                       for forged in FORGED_ATTEMPTS]
)
def test_a_forged_message_is_logged_safely_and_dropped(db, job, attempts, caplog, args):
    seen = attempts(lambda **kwargs: pytest.fail("the service must not run"))
    with caplog.at_level(logging.ERROR, logger="conversions.tasks"):
        result = convert_video_task.apply(args=args)
    assert result.state == states.REJECTED  # dropped: not retried, not requeued
    assert seen == []
    [record] = [record for record in caplog.records if "dropped a message" in record.getMessage()]
    line = record.getMessage()
    assert "\n" not in line and len(line) < 200
    assert "injected" not in line or "\\n" in line  # repr-escaped: the forged line break stays on this line


# --- the retention sweep, end to end -------------------------------------------------------------------------------
@pytest.mark.e2e
def test_the_workers_timer_has_the_retention_sweep_run(transactional_db, tmp_path, user):
    # A job done 31 days ago, and a file two days old that no row names (its upload died before the row was written).
    done = DoneConversionFactory(owner=user)
    Conversion.objects.filter(pk=done.pk).update(finished_at=timezone.now() - timedelta(days=31))
    orphan = default_storage.save(source_name(uuid.uuid4()), ContentFile(b"video"))
    two_days_ago = (timezone.now() - timedelta(days=2)).timestamp()
    os.utime(default_storage.path(orphan), (two_days_ago, two_days_ago))
    cache.delete_many([retention.LAST_SWEEP_KEY, retention.QUEUED_KEY])

    # Workers as every deployment starts them, nothing else: a notify worker whose reconciler timer (every second here)
    # publishes the sweep, and a fetch worker, which consumes the maintenance queue and runs it.
    workers = start_workers(
        ("notify-worker", tmp_path, {"CELERY_WORKER_HOSTNAME": "notify-retention@%h", "RECONCILE_INTERVAL_SECONDS": "1"}),
        ("fetch-worker", tmp_path, {"CELERY_WORKER_HOSTNAME": "fetch-retention@%h"}),
    )

    def swept() -> bool:
        if Conversion.objects.get(pk=done.pk).status == Status.EXPIRED and not default_storage.exists(orphan):
            return True
        # Another worker of this session may have swept just before these rows were there: then its turn is over
        # for RETENTION_SWEEP_MINUTES. Make the next one due (the worker still has to publish and run it).
        if cache.get(retention.LEASE_KEY) is None and cache.get(retention.QUEUED_KEY) is None:
            cache.delete(retention.LAST_SWEEP_KEY)
        return False

    try:
        wait_for(swept, timeout=60, message="the timer's retention sweep")
    finally:
        stop_workers(workers)
    assert not default_storage.exists(done.mp3.name)
    assert Conversion.objects.get(pk=done.pk).original_filename == done.original_filename
