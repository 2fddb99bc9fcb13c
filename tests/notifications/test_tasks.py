"""The notification tasks, run in-process with Task.apply() (retries are re-applied at once, in-process): what
they retry, when they give up, and that a delivery another worker holds is looked at again."""

import logging
from datetime import timedelta

import pytest
from celery import states
from django.core import mail
from django.db import OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from conversions.models import Conversion
from notifications import services
from notifications.models import Delivery
from notifications.services import CLAIM_TIMEOUT, DELIVERY_MAX_TRIES, notifications_dispatch
from notifications.tasks import deliver_notification_task, notify_owner_task
from tests.factories import ConversionFactory
from tests.utils import free_port

State = Delivery.State


@pytest.fixture
def queued(monkeypatch):
    sent = []
    monkeypatch.setattr(services, "_enqueue", sent.append)
    return sent


@pytest.fixture
def retries(monkeypatch):
    """The countdown of every retry the delivery task asks for, before it is re-applied."""
    asked = []
    real_retry = deliver_notification_task.retry

    def recording_retry(*args, **kwargs):
        asked.append(kwargs.get("countdown"))
        return real_retry(*args, **kwargs)

    monkeypatch.setattr(deliver_notification_task, "retry", recording_retry)
    return asked


def deliver(delivery: Delivery):
    return deliver_notification_task.apply(args=[delivery.pk, str(delivery.conversion_id)])


def failing_once(function, error: Exception):
    calls = []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise error
        return function(**kwargs)

    flaky.calls = calls
    return flaky


@pytest.mark.parametrize(
    "error",
    [OperationalError(2013, "Lost connection to server during query"), BrokerError("[Errno 111] Connection refused")],
)
def test_the_notify_step_is_retried_after_a_database_or_broker_error(db, queued, monkeypatch, error):
    conversion = ConversionFactory(status=Conversion.Status.DONE)
    flaky = failing_once(notifications_dispatch, error)
    monkeypatch.setattr(services, "notifications_dispatch", flaky)
    result = notify_owner_task.apply(args=[str(conversion.id), 1])
    assert result.state == states.SUCCESS
    assert len(flaky.calls) == 2
    [delivery] = queued
    assert (delivery.conversion_id, delivery.channel) == (conversion.id, "email")


def test_a_database_error_around_a_send_is_waited_out(db, settings, queued, monkeypatch):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    conversion = ConversionFactory(status=Conversion.Status.DONE)
    [delivery] = notifications_dispatch(conversion_id=conversion.id, attempt=1)
    flaky = failing_once(services.delivery_send, OperationalError(2006, "MySQL server has gone away"))
    monkeypatch.setattr(services, "delivery_send", flaky)
    assert deliver(delivery).state == states.SUCCESS
    assert len(flaky.calls) == 2
    assert Delivery.objects.get(pk=delivery.pk).state == State.DELIVERED
    assert len(mail.outbox) == 1


def test_smtp_down_on_every_try_gives_the_delivery_up(db, settings, queued, retries):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    conversion = ConversionFactory(status=Conversion.Status.DONE)
    [delivery] = notifications_dispatch(conversion_id=conversion.id, attempt=1)
    result = deliver(delivery)
    assert result.state == states.FAILURE  # Flower shows it
    given_up = Delivery.objects.get(pk=delivery.pk)
    assert (given_up.state, given_up.tries) == (State.FAILED, DELIVERY_MAX_TRIES)
    assert "ConnectionRefusedError" in given_up.error
    assert len(retries) == DELIVERY_MAX_TRIES - 1
    assert all(0 <= countdown <= 600 for countdown in retries)


def test_a_delivery_another_worker_holds_is_sent_once_that_claim_has_expired(db, settings, queued, monkeypatch):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    conversion = ConversionFactory(status=Conversion.Status.DONE)
    [delivery] = notifications_dispatch(conversion_id=conversion.id, attempt=1)
    # A worker claimed it and died mid-send; its message came back at once, while the claim is still live.
    Delivery.objects.filter(pk=delivery.pk).update(state=State.CLAIMED, claimed_at=timezone.now(), tries=1)
    countdowns = []
    real_retry = deliver_notification_task.retry

    def time_passes(*args, **kwargs):
        countdowns.append(kwargs.get("countdown"))
        # By the end of the countdown the dead worker's claim has expired.
        expired = timezone.now() - CLAIM_TIMEOUT - timedelta(seconds=1)
        Delivery.objects.filter(pk=delivery.pk).update(claimed_at=expired)
        return real_retry(*args, **kwargs)

    monkeypatch.setattr(deliver_notification_task, "retry", time_passes)
    result = deliver(delivery)
    assert result.state == states.SUCCESS
    assert countdowns == [CLAIM_TIMEOUT.total_seconds() + 1]
    sent = Delivery.objects.get(pk=delivery.pk)
    assert (sent.state, sent.tries) == (State.DELIVERED, 2)
    assert [message.to for message in mail.outbox] == [[conversion.owner.email]]


@pytest.mark.parametrize(
    ("task", "args"),
    [
        (notify_owner_task, ["not-a-uuid\nforged line", 1]),
        (notify_owner_task, ["6f1c8a1e-3f7e-4ad8-9c43-0a4c1d1f2b3c", "1"]),
        (notify_owner_task, [{"id": 1}, None]),
        (deliver_notification_task, ["1", "6f1c8a1e-3f7e-4ad8-9c43-0a4c1d1f2b3c"]),
        (deliver_notification_task, [True, "6f1c8a1e-3f7e-4ad8-9c43-0a4c1d1f2b3c"]),
        (deliver_notification_task, [1, "x" * 10_000]),
    ],
)
def test_a_forged_message_is_logged_safely_and_dropped(db, queued, monkeypatch, caplog, task, args):
    monkeypatch.setattr(services, "notifications_dispatch", lambda **kwargs: pytest.fail("dispatched"))
    monkeypatch.setattr(services, "delivery_send", lambda **kwargs: pytest.fail("sent"))
    with caplog.at_level(logging.ERROR):
        result = task.apply(args=args)
    assert result.state == states.REJECTED
    [record] = [record for record in caplog.records if "dropped a message" in record.getMessage()]
    assert "\n" not in record.getMessage() and len(record.getMessage()) < 200
    assert queued == [] and mail.outbox == []
