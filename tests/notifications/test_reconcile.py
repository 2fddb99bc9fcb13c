"""notifications.reconcile against the real database: which notifications lost their message and are queued again,
and which are left alone (a delivery waiting for its backoff or a live claim, a cancelled job, an old one)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversions.models import Conversion
from notifications import services
from notifications.channels import EmailChannel
from notifications.models import Delivery
from notifications.reconcile import RECENT, notifications_reconcile
from notifications.services import CLAIM_TIMEOUT, Outcome, delivery_send, notifications_dispatch
from tests.factories import ConversionFactory
from tests.utils import free_port

Status = Conversion.Status
State = Delivery.State
STALE = timedelta(seconds=120)  # STALE_JOB_SECONDS in the tests' settings


@pytest.fixture(autouse=True)
def stale_after(settings):
    settings.STALE_JOB_SECONDS = STALE.total_seconds()


@pytest.fixture
def queued(monkeypatch):
    """The deliveries handed to the delivery task (recorded instead of published)."""
    sent = []
    monkeypatch.setattr(services, "_enqueue", sent.append)
    return sent


def finished(status=Status.DONE, *, ago=timedelta(minutes=10), **fields) -> Conversion:
    conversion = ConversionFactory(status=status, **fields)
    Conversion.objects.filter(pk=conversion.pk).update(finished_at=timezone.now() - ago)
    return Conversion.objects.get(pk=conversion.pk)


def delivery(conversion=None, **fields) -> Delivery:
    """A delivery of a finished job as the notify step makes it, then changed to `fields`."""
    conversion = conversion or finished()
    made, _ = Delivery.objects.get_or_create(conversion=conversion, channel="email", attempt=conversion.attempt)
    Delivery.objects.filter(pk=made.pk).update(**fields)
    return Delivery.objects.get(pk=made.pk)


def ids(deliveries) -> list[int]:
    return [delivery.pk for delivery in deliveries]


# --- a finished job whose notify step was lost -------------------------------------------------------------------
@pytest.mark.parametrize("status", [Status.DONE, Status.FAILED])
def test_a_finished_job_nobody_was_told_about_gets_its_notify_step(db, queued, status):
    conversion = finished(status, attempt=2)
    done = notifications_reconcile()
    assert done.dispatched == [conversion.id] and not done.republished
    [made] = Delivery.objects.all()
    assert (made.conversion_id, made.channel, made.attempt, made.state, made.tries) == (
        conversion.id, "email", 2, State.PENDING, 0)
    assert ids(queued) == [made.pk]

    # Done once: the delivery it made is the mark, so the next run (or another worker's) does nothing more.
    assert not notifications_reconcile()
    assert ids(queued) == [made.pk] and Delivery.objects.count() == 1


def test_a_cancelled_or_unfinished_job_is_not_notified(db, queued):
    for status in (Status.CANCELLED, Status.QUEUED, Status.PROCESSING):
        finished(status)
    assert not notifications_reconcile()
    assert queued == [] and not Delivery.objects.exists()


def test_a_job_that_just_finished_is_left_to_its_own_notify_step(db, queued):
    finished(ago=STALE - timedelta(seconds=5))
    assert not notifications_reconcile()
    assert queued == [] and not Delivery.objects.exists()


def test_an_old_job_is_never_notified(db, queued):
    # An upgrade (or a long outage) must not mail about jobs from long ago.
    finished(ago=RECENT + timedelta(minutes=1))
    assert not notifications_reconcile()
    assert queued == [] and not Delivery.objects.exists()


def test_a_job_already_told_about_its_attempt_is_left_alone_but_a_retry_is_told_again(db, queued):
    told = finished()
    delivery(told, state=State.DELIVERED, delivered_at=timezone.now())
    retried = finished(attempt=2)
    Delivery.objects.create(conversion=retried, channel="email", attempt=1, state=State.DELIVERED)
    done = notifications_reconcile()
    assert done.dispatched == [retried.id]
    assert Delivery.objects.filter(conversion=retried, attempt=2).count() == 1
    assert Delivery.objects.filter(conversion=told).count() == 1


def test_the_notify_step_run_twice_queues_an_existing_delivery_once_only(db, queued):
    conversion = finished()
    [made] = notifications_dispatch(conversion_id=conversion.id, attempt=1, only_new=True)
    assert notifications_dispatch(conversion_id=conversion.id, attempt=1, only_new=True) == [made]
    assert ids(queued) == [made.pk]
    notifications_dispatch(conversion_id=conversion.id, attempt=1)  # the chain's own step: queues it again
    assert ids(queued) == [made.pk, made.pk] and Delivery.objects.count() == 1


# --- a delivery whose message was lost ---------------------------------------------------------------------------
def test_a_pending_delivery_overdue_is_published_again_with_its_tries(db, queued):
    now = timezone.now()
    lost = delivery(tries=3, error="ConnectionRefusedError()", next_try_at=now - STALE - timedelta(seconds=1))
    done = notifications_reconcile(now=now)
    assert done.republished == [lost.pk] and not done.dispatched
    assert ids(queued) == [lost.pk]
    again = Delivery.objects.get(pk=lost.pk)
    assert (again.state, again.tries, again.next_try_at) == (State.PENDING, 3, now)  # tries kept: the limit holds

    # Published now, so due now: the next run leaves it alone until it is overdue again.
    assert not notifications_reconcile(now=now + timedelta(seconds=1))
    assert notifications_reconcile(now=now + STALE + timedelta(seconds=1)).republished == [lost.pk]


def test_a_delivery_waiting_for_its_backoff_is_left_alone(db, queued):
    now = timezone.now()
    delivery(tries=4, next_try_at=now + timedelta(minutes=8))  # a retry countdown still running
    delivery(finished(), tries=1, next_try_at=now - STALE + timedelta(seconds=5))  # due, its message on its way
    assert not notifications_reconcile(now=now)
    assert queued == []


def test_a_delivery_that_was_never_published_is_sent(db, queued):
    # Made (at its creation it is due at once), but the publish after it never happened.
    made = delivery()
    assert not notifications_reconcile()
    assert notifications_reconcile(now=timezone.now() + STALE + timedelta(seconds=1)).republished == [made.pk]


def test_a_claim_left_by_a_dead_sender_is_published_again_once_expired(db, queued):
    now = timezone.now()
    claimed_at = now - CLAIM_TIMEOUT - STALE - timedelta(seconds=1)
    dead = delivery(state=State.CLAIMED, claimed_at=claimed_at, tries=1, next_try_at=claimed_at + CLAIM_TIMEOUT)
    live = delivery(finished(), state=State.CLAIMED, claimed_at=now - timedelta(minutes=1), tries=1,
                    next_try_at=now - timedelta(minutes=1) + CLAIM_TIMEOUT)
    assert notifications_reconcile(now=now).republished == [dead.pk]
    assert ids(queued) == [dead.pk]
    assert Delivery.objects.get(pk=live.pk).next_try_at == live.next_try_at


def test_settled_deliveries_are_left_alone(db, queued):
    long_ago = timezone.now() - timedelta(hours=1)
    delivery(state=State.DELIVERED, delivered_at=long_ago, next_try_at=long_ago)
    delivery(finished(), state=State.FAILED, tries=11, next_try_at=long_ago)
    assert not notifications_reconcile()
    assert queued == []


def test_a_row_of_the_release_before_is_due_when_last_written(db, queued):
    made = delivery(next_try_at=None)
    assert not notifications_reconcile()
    assert notifications_reconcile(now=timezone.now() + STALE + timedelta(seconds=1)).republished == [made.pk]


# --- what the sender records for the reconciler ------------------------------------------------------------------
def test_a_failed_try_records_when_its_retry_is_due_and_a_claim_when_it_expires(db, queued, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    made = delivery()
    before = timezone.now()
    assert delivery_send(delivery_id=made.pk, retry_in=300) is Outcome.RETRY
    failed = Delivery.objects.get(pk=made.pk)
    assert failed.state == State.PENDING
    assert before + timedelta(seconds=300) <= failed.next_try_at <= timezone.now() + timedelta(seconds=300)
    # Waiting for that backoff, it is left alone, however long ago it was made.
    assert not notifications_reconcile(now=before + timedelta(seconds=300))
    assert notifications_reconcile(now=timezone.now() + timedelta(seconds=300) + STALE).republished == [made.pk]


def test_a_claimed_delivery_is_due_when_its_claim_expires(db, queued, monkeypatch):
    made = delivery()
    mid_send = []
    monkeypatch.setattr(EmailChannel, "send", lambda self, conversion: mid_send.append(
        Delivery.objects.get(pk=made.pk)))
    assert delivery_send(delivery_id=made.pk) is Outcome.SENT
    [held] = mid_send
    assert held.state == State.CLAIMED and held.next_try_at == held.claimed_at + CLAIM_TIMEOUT
