"""notifications.services against the real database and Django's mail: what is sent about a finished job, once."""

import re
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from conversions import engine
from conversions.models import Conversion
from conversions.services import conversion_link_resolve
from notifications import services
from notifications.channels import EmailChannel
from notifications.models import Delivery
from notifications.services import (
    CLAIM_TIMEOUT,
    DELIVERY_MAX_TRIES,
    Outcome,
    delivery_send,
    notification_resend,
    notifications_dispatch,
)
from tests.factories import ConversionFactory
from tests.utils import free_port, jobs

Status = Conversion.Status
State = Delivery.State


@pytest.fixture
def locmem_email(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    return mail.outbox


@pytest.fixture
def queued(monkeypatch):
    """The deliveries handed to the delivery task (recorded instead of published)."""
    sent = []
    monkeypatch.setattr(services, "_enqueue", sent.append)
    return sent


def notify(conversion: Conversion) -> list[Delivery]:
    """The notify step, then each delivery it queued sent as the delivery task would."""
    deliveries = notifications_dispatch(conversion_id=conversion.id, attempt=conversion.attempt)
    for delivery in deliveries:
        delivery_send(delivery_id=delivery.pk)
    return deliveries


def state_of(delivery: Delivery) -> Delivery:
    return Delivery.objects.get(pk=delivery.pk)


# --- the notify step and the email -------------------------------------------------------------------------------
def test_done_job_is_emailed_once(db, locmem_email, queued):
    conversion = ConversionFactory(status=Status.DONE)
    [delivery] = notify(conversion)
    assert queued == [delivery]
    assert (delivery.channel, delivery.attempt) == ("email", 1)
    [message] = locmem_email
    assert message.to == [conversion.owner.email]
    assert message.subject == "MP3 Download"
    assert message.body.startswith(f"mp3 file_id: {conversion.id} is now ready!\n")
    assert f"http://testserver/conversions/{conversion.id}/\n" in message.body
    [token] = re.findall(r"http://testserver/links/(\S+)/\n", message.body)
    assert conversion_link_resolve(token=token) == conversion
    assert f"http://testserver/download?fid={conversion.id}" in message.body
    # Not the API's download URL, which needs a token: a browser opening it would only get a 401.
    assert f"/api/conversions/{conversion.id}/download/" not in message.body
    sent = state_of(delivery)
    assert (sent.state, sent.tries, sent.error) == (State.DELIVERED, 1, "")
    notified_at = jobs().get(pk=conversion.pk).notified_at
    assert notified_at == sent.delivered_at is not None

    # A second copy of either task sends nothing more, and the notify step queues nothing for a sent delivery.
    assert delivery_send(delivery_id=delivery.pk) is Outcome.SETTLED
    assert notifications_dispatch(conversion_id=conversion.id, attempt=1) == [delivery]
    assert len(locmem_email) == 1 and queued == [delivery]
    assert jobs().get(pk=conversion.pk).notified_at == notified_at
    assert Delivery.objects.count() == 1


def test_failed_job_is_emailed_with_the_reason(db, locmem_email, queued):
    conversion = ConversionFactory(
        status=Status.FAILED, error_code="no_audio_stream", error_message=engine.NoAudioStream.message
    )
    notify(conversion)
    [message] = locmem_email
    assert message.subject == "MP3 conversion failed"
    assert engine.NoAudioStream.message in message.body
    assert str(conversion.id) in message.body


@pytest.mark.parametrize("status", [Status.QUEUED, Status.PROCESSING, Status.CANCELLED])
def test_nothing_is_sent_about_a_job_that_did_not_finish(db, locmem_email, queued, status):
    conversion = ConversionFactory(status=status)
    assert notify(conversion) == []
    assert notifications_dispatch(conversion_id=uuid.uuid4(), attempt=1) == []
    assert locmem_email == [] and queued == []
    assert not Delivery.objects.exists()
    assert jobs().get(pk=conversion.pk).notified_at is None


def test_a_message_without_an_attempt_is_about_the_current_one(db, locmem_email, queued):
    # Queued by the resend of releases before deliveries: `notify_owner_task(conversion_id)`.
    conversion = ConversionFactory(status=Status.DONE, attempt=3)
    [delivery] = notifications_dispatch(conversion_id=conversion.id)
    assert delivery.attempt == 3


def test_a_message_of_an_earlier_attempt_sends_nothing(db, locmem_email, queued):
    conversion = ConversionFactory(status=Status.DONE, attempt=2)
    assert notifications_dispatch(conversion_id=conversion.id, attempt=1) == []
    assert not Delivery.objects.exists()


def test_a_delivery_overtaken_by_a_retry_is_not_sent(db, locmem_email, queued):
    conversion = ConversionFactory(status=Status.FAILED, error_message="Boom.")
    [delivery] = notifications_dispatch(conversion_id=conversion.id, attempt=1)
    Conversion.objects.filter(pk=conversion.pk).update(status=Status.QUEUED, attempt=2)  # retried before sending
    assert delivery_send(delivery_id=delivery.pk) is Outcome.SETTLED
    assert locmem_email == []
    assert state_of(delivery).state == State.FAILED
    assert "retried" in state_of(delivery).error


# --- failures and claims -----------------------------------------------------------------------------------------
@pytest.fixture
def smtp_down(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5


def test_smtp_down_releases_the_claim_for_a_retry(db, smtp_down, queued):
    conversion = ConversionFactory(status=Status.DONE)
    [delivery] = notifications_dispatch(conversion_id=conversion.id, attempt=1)
    assert delivery_send(delivery_id=delivery.pk) is Outcome.RETRY  # ConnectionRefusedError: worth another try
    failed = state_of(delivery)
    assert (failed.state, failed.tries) == (State.PENDING, 1)  # free for the retry to claim
    assert "ConnectionRefusedError" in failed.error
    assert jobs().get(pk=conversion.pk).notified_at is None
    assert Conversion.objects.get(pk=conversion.pk).status == Status.DONE


def test_the_last_try_failing_gives_the_delivery_up(db, smtp_down, queued):
    conversion = ConversionFactory(status=Status.DONE)
    [delivery] = notifications_dispatch(conversion_id=conversion.id, attempt=1)
    Delivery.objects.filter(pk=delivery.pk).update(tries=DELIVERY_MAX_TRIES - 1)
    assert delivery_send(delivery_id=delivery.pk) is Outcome.FAILED
    assert (state_of(delivery).state, state_of(delivery).tries) == (State.FAILED, DELIVERY_MAX_TRIES)
    assert "ConnectionRefusedError" in state_of(delivery).error
    assert delivery_send(delivery_id=delivery.pk) is Outcome.SETTLED


def test_a_claim_held_by_a_live_sender_stops_a_second_one(db, locmem_email, queued):
    conversion = ConversionFactory(status=Status.DONE)
    [delivery] = notifications_dispatch(conversion_id=conversion.id, attempt=1)
    Delivery.objects.filter(pk=delivery.pk).update(state=State.CLAIMED, claimed_at=timezone.now())
    assert delivery_send(delivery_id=delivery.pk) is Outcome.BUSY  # to be looked at again once the claim expires
    assert locmem_email == []
    assert (state_of(delivery).state, state_of(delivery).tries) == (State.CLAIMED, 0)


def test_a_channel_failing_in_a_way_a_retry_cannot_mend_gives_up_at_once(db, queued, monkeypatch):
    conversion = ConversionFactory(status=Status.DONE)
    [delivery] = notifications_dispatch(conversion_id=conversion.id, attempt=1)

    def broken(self, conversion):
        raise ValueError("a bug in the channel")

    monkeypatch.setattr(EmailChannel, "send", broken)
    assert delivery_send(delivery_id=delivery.pk) is Outcome.FAILED
    assert (state_of(delivery).state, state_of(delivery).tries) == (State.FAILED, 1)
    assert "a bug in the channel" in state_of(delivery).error


def test_a_delivery_whose_job_is_deleted_is_settled(db, queued):
    conversion = ConversionFactory(status=Status.DONE)
    [delivery] = notifications_dispatch(conversion_id=conversion.id, attempt=1)
    conversion.delete()  # its deliveries go with it
    assert delivery_send(delivery_id=delivery.pk) is Outcome.SETTLED


def test_a_claim_left_by_a_dead_sender_expires(db, locmem_email, queued):
    conversion = ConversionFactory(status=Status.DONE)
    [delivery] = notifications_dispatch(conversion_id=conversion.id, attempt=1)
    stale = timezone.now() - CLAIM_TIMEOUT - timedelta(seconds=1)
    Delivery.objects.filter(pk=delivery.pk).update(state=State.CLAIMED, claimed_at=stale, tries=1)
    assert delivery_send(delivery_id=delivery.pk) is Outcome.SENT
    assert len(locmem_email) == 1
    assert (state_of(delivery).state, state_of(delivery).tries) == (State.DELIVERED, 2)


# --- resend ------------------------------------------------------------------------------------------------------
def test_resend_sends_a_delivered_email_again(db, locmem_email, queued):
    conversion = ConversionFactory(status=Status.DONE)
    [delivery] = notify(conversion)
    resent = notification_resend(conversion=conversion, channel="email")
    assert resent.pk == delivery.pk and queued == [delivery, resent]
    assert state_of(delivery).state == State.PENDING
    assert delivery_send(delivery_id=delivery.pk) is Outcome.SENT
    assert [message.subject for message in locmem_email] == ["MP3 Download", "MP3 Download"]
    assert (state_of(delivery).state, state_of(delivery).tries) == (State.DELIVERED, 2)


def test_resend_of_a_job_never_notified_creates_its_delivery(db, locmem_email, queued):
    conversion = ConversionFactory(status=Status.FAILED, error_message="Boom.")
    delivery = notification_resend(conversion=conversion, channel="email")
    assert queued == [delivery]
    assert delivery_send(delivery_id=delivery.pk) is Outcome.SENT
    assert [message.subject for message in locmem_email] == ["MP3 conversion failed"]
