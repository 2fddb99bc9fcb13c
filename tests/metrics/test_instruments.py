"""What the services observe: attempts that end (with their time, speed and bytes), redeliveries, storage errors,
and the webhook deliveries' counter the notifications will call."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversions import engine
from conversions.models import Conversion
from conversions.services import conversion_cancel, conversion_convert, conversion_mark_failed, conversion_reconcile
from conversions.services.lifecycle import conversion_admit
from mp3converter.errors import InternalError, StorageUnavailable
from mp3converter.metrics import conversion_finished_observed, webhook_delivery_observed
from mp3converter.metrics import instruments
from tests.factories import ConversionFactory
from tests.fixtures.workers import purge_queues
from tests.metrics.helpers import Moved

Status = Conversion.Status
FINISHED = "mp3converter_conversions_finished_total"
REDELIVERIES = "mp3converter_conversion_redeliveries_total"


def test_a_done_attempt_observes_its_time_speed_and_bytes():
    with Moved() as moved:
        conversion_finished_observed(status=Status.DONE, seconds=4.0, audio_seconds=120.0, bytes_in=5000, bytes_out=900)
    assert moved(FINISHED, status="done", error_code="") == 1
    assert moved("mp3converter_conversion_duration_seconds_count") == 1
    assert moved("mp3converter_conversion_duration_seconds_sum") == pytest.approx(4.0)
    # 120 s of audio in 4 s: a realtime factor of 30, in the bucket up to 50 and not in the one up to 20.
    assert moved("mp3converter_conversion_realtime_factor_sum") == pytest.approx(30.0)
    assert moved("mp3converter_conversion_realtime_factor_bucket", le="50.0") == 1
    assert moved("mp3converter_conversion_realtime_factor_bucket", le="20.0") == 0
    assert (moved("mp3converter_conversion_bytes_total", direction="in"),
            moved("mp3converter_conversion_bytes_total", direction="out")) == (5000, 900)


def test_failing_and_cancelling_count_the_attempt_with_its_code(db):
    failing, cancelling, finished = ConversionFactory(), ConversionFactory(), ConversionFactory(status=Status.DONE)
    with Moved() as moved:
        assert conversion_mark_failed(conversion_id=failing.id, error=InternalError())
        assert conversion_cancel(conversion=cancelling)
        # A job that had already finished changes nothing, so nothing is counted.
        assert not conversion_mark_failed(conversion_id=finished.id, error=InternalError())
        assert not conversion_cancel(conversion=finished)
    assert moved(FINISHED, status="failed", error_code="internal_error") == 1
    assert moved(FINISHED, status="cancelled", error_code="cancelled") == 1
    assert moved.total(FINISHED) == 2
    assert moved("mp3converter_conversion_duration_seconds_count") == 0  # only done attempts are timed


def test_a_message_the_broker_hands_back_once_too_often_counts_a_redelivery_and_a_failure(db, settings):
    job = ConversionFactory(status=Status.PROCESSING, redeliveries=settings.CONVERSION_MAX_REDELIVERIES)
    with Moved() as moved:
        conversion_convert(conversion_id=job.id, attempt=job.attempt, redelivered=True)
    assert Conversion.objects.get(pk=job.pk).status == Status.FAILED
    assert moved(REDELIVERIES, by="broker") == 1
    assert moved(FINISHED, status="failed", error_code="internal_error") == 1


def test_the_reconciler_counts_the_jobs_it_queues_again(db, settings):
    stale = timezone.now() - timedelta(seconds=settings.STALE_JOB_SECONDS * 3)
    ConversionFactory.create_batch(2, status=Status.PROCESSING, started_at=stale, heartbeat_at=stale)
    try:
        with Moved() as moved:
            assert len(conversion_reconcile().requeued) == 2
    finally:
        purge_queues()  # the reconciler published them for real
    assert moved(REDELIVERIES, by="reconciler") == 2
    assert moved(REDELIVERIES, by="broker") == 0


def test_a_store_that_fails_at_upload_counts_a_storage_error(db, user, media):
    def store_source(conversion):
        raise OSError("the file store is full")

    with Moved() as moved, pytest.raises(StorageUnavailable):
        conversion_admit(
            owner=user, path=media("mp4_aac"), size=media("mp4_aac").stat().st_size, filename="holiday.mp4",
            options=engine.OutputOptions(), store_source=store_source,
        )
    assert moved("mp3converter_storage_errors_total") == 1


@pytest.mark.parametrize("outcome", instruments.WEBHOOK_OUTCOMES)
def test_webhook_deliveries_are_counted_by_outcome(outcome):
    with Moved() as moved:
        webhook_delivery_observed(outcome)
    assert moved("mp3converter_webhook_deliveries_total", outcome=outcome) == 1
    assert moved.total("mp3converter_webhook_deliveries_total") == 1


def test_an_unknown_webhook_outcome_is_the_callers_bug_and_makes_no_series():
    with Moved() as moved, pytest.raises(ValueError, match="one of sent, retry, failed"):
        webhook_delivery_observed("delivered")
    assert moved.total("mp3converter_webhook_deliveries_total") == 0
    assert ("mp3converter_webhook_deliveries_total", frozenset({("outcome", "delivered")})) not in moved.after
