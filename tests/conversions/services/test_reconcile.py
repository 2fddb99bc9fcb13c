"""conversions.services.reconcile: stale processing jobs are queued again as a new attempt, or failed past the
redelivery limit. Real database and broker (what it publishes goes to the test vhost and is purged after each test);
the broker side of queued jobs (counting messages) is tested in tests/faults/test_reconcile.py, with no consumer
running."""

import io
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connections
from django.utils import timezone

from conversions.models import Conversion
from conversions.services import conversion_convert, conversion_reconcile, reconcile
from mp3converter.errors import ErrorCode
from tests.factories import ConversionFactory
from tests.fixtures.workers import purge_queues

Status = Conversion.Status


@pytest.fixture(autouse=True)
def _no_messages_left():
    yield
    purge_queues()


@pytest.fixture
def published(monkeypatch):
    """What the reconciler publishes, (job id, attempt), recorded on the way to the real broker."""
    seen = []
    real_enqueue = reconcile.conversion_enqueue

    def enqueue(*, conversion_id, attempt, fetch=False):
        seen.append((conversion_id, attempt))
        real_enqueue(conversion_id=conversion_id, attempt=attempt, fetch=fetch)

    monkeypatch.setattr(reconcile, "conversion_enqueue", enqueue)
    return seen


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def processing(**fields) -> Conversion:
    defaults = {"status": Status.PROCESSING, "started_at": ago(600), "heartbeat_at": ago(300), "progress": 18}
    return ConversionFactory(**{**defaults, **fields})


def test_a_processing_job_that_lost_its_worker_is_queued_again_as_a_new_attempt(db, published):
    lost = processing()
    # The dead attempt had stored its MP3 but not recorded it: nothing would ever point at that file.
    left_over = default_storage.save(f"mp3/{lost.id}-1.mp3", io.BytesIO(b"from the dead attempt"))
    before = timezone.now()

    done = conversion_reconcile()
    assert done.requeued == [lost.id] and not done.failed
    row = Conversion.objects.get(pk=lost.pk)
    assert (row.status, row.attempt, row.redeliveries, row.progress, row.started_at) == (Status.QUEUED, 2, 1, 0,
                                                                                        None)
    assert row.heartbeat_at >= before  # queued now: not taken for a lost message straight away
    assert published == [(lost.id, 2)]
    assert not default_storage.exists(left_over)
    # Running it again changes nothing more.
    assert not conversion_reconcile()
    assert published == [(lost.id, 2)]


@pytest.mark.parametrize(
    "fields",
    [
        {"heartbeat_at": ago(30)},  # alive: well inside STALE_JOB_SECONDS
        {"heartbeat_at": timezone.now() + timedelta(seconds=200)},  # waiting for its task's retry (a future beat)
        {"heartbeat_at": None, "started_at": ago(30)},  # claimed by a release without heartbeats, recently
    ],
)
def test_a_processing_job_with_a_recent_sign_of_life_is_left_alone(db, published, fields):
    alive = processing(**fields)
    assert not conversion_reconcile()
    row = Conversion.objects.get(pk=alive.pk)
    assert (row.status, row.attempt, row.redeliveries) == (Status.PROCESSING, 1, 0)
    assert published == []


def test_without_a_heartbeat_the_start_counts(db, published):
    lost = processing(heartbeat_at=None, started_at=ago(settings.STALE_JOB_SECONDS + 5))
    assert conversion_reconcile().requeued == [lost.id]


def test_the_requeued_attempt_converts_and_the_old_one_changes_nothing(db, queued):
    conversion = queued("wav")
    Conversion.objects.filter(pk=conversion.pk).update(status=Status.PROCESSING, started_at=ago(600),
                                                       heartbeat_at=ago(300))
    assert conversion_reconcile().requeued == [conversion.id]
    # The old attempt's message, should a broker hand it back, finds nothing to do.
    conversion_convert(conversion_id=conversion.id, attempt=1, redelivered=True)
    row = Conversion.objects.get(pk=conversion.pk)
    assert (row.status, row.attempt, row.redeliveries) == (Status.QUEUED, 2, 1)
    conversion_convert(conversion_id=conversion.id, attempt=2)
    row = Conversion.objects.get(pk=conversion.pk)
    assert (row.status, row.mp3.name) == (Status.DONE, f"mp3/{conversion.id}-2.mp3")


def test_a_job_that_keeps_losing_its_worker_fails_after_the_redelivery_limit(db, published):
    limit = settings.CONVERSION_MAX_REDELIVERIES
    job = processing()
    rounds = 0
    while (row := Conversion.objects.get(pk=job.pk)).status != Status.FAILED:
        assert rounds <= limit, f"still {row.status} after {rounds} rounds"
        conversion_reconcile()
        rounds += 1
        # A worker claims the new attempt, and dies with it too.
        Conversion.objects.filter(pk=job.pk, status=Status.QUEUED).update(
            status=Status.PROCESSING, started_at=ago(600), heartbeat_at=ago(300)
        )
    assert rounds == limit + 1
    assert row.error_code == ErrorCode.INTERNAL_ERROR
    assert "stopped the worker every time" in row.error_message
    assert row.redeliveries == limit + 1
    assert row.attempt == limit + 1  # the failing run made no new attempt
    assert published == [(job.id, attempt) for attempt in range(2, limit + 2)]
    assert not conversion_reconcile()  # failed stays failed


def test_reconcilers_running_at_once_requeue_a_job_once(transactional_db, monkeypatch):
    # Several convert workers start together (a scale-up): each runs the reconciler.
    jobs = [processing() for _ in range(5)]
    published = []
    real_enqueue = reconcile.conversion_enqueue
    monkeypatch.setattr(reconcile, "conversion_enqueue",
                        lambda **kwargs: (published.append(kwargs["conversion_id"]), real_enqueue(**kwargs)))
    barrier = threading.Barrier(4)
    results, errors = [], []

    def run():
        try:
            barrier.wait(timeout=30)
            results.append(conversion_reconcile())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(job_id for done in results for job_id in done.requeued) == sorted(job.id for job in jobs)
    assert sorted(published) == sorted(job.id for job in jobs)
    assert {row.attempt for row in Conversion.objects.all()} == {2}
