"""Webhooks, in-process, against a real receiver (tests/fixtures/receiver.py) that verifies every signature with the
standardwebhooks library: endpoints and their secrets, the outbound guard when saved and at connect time, the
messages made for a finished job, each try logged, the retry schedule, a 410, and the endpoint disabled (and its owner
emailed) after failing too long."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.verification import account_email_send
from conversions.models import Conversion
from notifications import webhooks
from notifications.channels import CHANNELS
from notifications.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from notifications.reconcile import notifications_reconcile
from notifications.services import Outcome
from notifications.webhook_sending import INTERRUPTED, message_id, webhook_delivery_send
from notifications.webhooks import (
    WebhookUrlRefused,
    job_webhook_secret_rotate,
    webhook_deliveries_create,
    webhook_delivery_redeliver,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from mp3converter.errors import InvalidState
from tests.factories import ConversionFactory
from tests.metrics.helpers import Moved

State = WebhookDelivery.State
LOOPBACK = ["127.0.0.1/32"]


@pytest.fixture
def reachable(settings):
    """The receiver's loopback address allowed, as the suite's notify worker has it; short waits."""
    settings.OUTBOUND_ALLOWED_NETWORKS = LOOPBACK
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 60, 600]
    settings.WEBHOOK_TIMEOUT = 2
    return settings


@pytest.fixture
def queued(monkeypatch):
    """Messages queued (on commit): their ids, without a broker."""
    ids = []
    monkeypatch.setattr(webhooks, "webhook_delivery_enqueue", lambda delivery: ids.append(delivery.pk))
    return ids


@pytest.fixture
def endpoint(reachable, user, receiver):
    receiver.start()
    made, secret = webhook_endpoint_create(owner=user, url=receiver.url)
    receiver.secrets.append(secret)
    return made


def finished_job(user, status=Conversion.Status.DONE, **fields) -> Conversion:
    error = {"error_code": "no_audio_stream", "error_message": "The file has no audio."} if status == "failed" else {}
    return ConversionFactory(owner=user, status=status, finished_at=timezone.now(), duration_seconds=2.0,
                             **error, **fields)


def message_for(endpoint, job) -> WebhookDelivery:
    [delivery] = webhook_deliveries_create(conversion=job)
    assert delivery.endpoint_id == endpoint.pk
    return delivery


def make_due(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_try_at=timezone.now())


def attempts(delivery) -> list[WebhookAttempt]:
    return list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))


# --- Endpoints and the outbound guard ------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://localhost/hook",
                                 "http://[::1]/hook", "http://169.254.169.254/latest/"])
def test_a_private_address_is_refused_on_the_defaults(user, url):
    with pytest.raises(WebhookUrlRefused) as refused:
        webhook_endpoint_create(owner=user, url=url)
    assert refused.value.field == "url" and "may not reach" in refused.value.message
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url, sentence", [
    ("ftp://example.com/hook", "Only http and https URLs can be used for webhooks."),
    ("https://user:pw@example.com/hook", "A URL with a user name or password cannot be used for webhooks."),
])
def test_a_url_that_is_not_one_is_refused(user, url, sentence):
    with pytest.raises(WebhookUrlRefused) as refused:
        webhook_endpoint_create(owner=user, url=url)
    assert refused.value.message == sentence


@pytest.mark.django_db
def test_an_endpoint_gets_a_standard_webhooks_secret_and_every_event_by_default(reachable, user):
    endpoint, secret = webhook_endpoint_create(owner=user, url="http://127.0.0.1:9/hook")
    assert secret.startswith("whsec_") and endpoint.secret == secret
    assert endpoint.events == ["conversion.done", "conversion.failed"] and endpoint.active
    again = webhook_endpoint_update(endpoint=endpoint, url="http://127.0.0.1:10/hook", events=["conversion.failed"])
    assert (again.url, again.events) == ("http://127.0.0.1:10/hook", ["conversion.failed"])
    reachable.OUTBOUND_ALLOWED_NETWORKS = []
    with pytest.raises(WebhookUrlRefused):  # checked again when it is saved
        webhook_endpoint_update(endpoint=endpoint, url="http://127.0.0.1:11/hook")


@pytest.mark.django_db
def test_the_guard_is_checked_again_at_connect_time(endpoint, reachable, user, receiver):
    delivery = message_for(endpoint, finished_job(user))
    reachable.OUTBOUND_ALLOWED_NETWORKS = []  # saved while allowed; no longer allowed when sent
    sent = webhook_delivery_send(delivery_id=delivery.pk)
    assert sent.outcome is Outcome.RETRY
    [attempt] = attempts(delivery)
    assert attempt.status_code is None and "loopback address, which the service may not reach" in attempt.error
    assert receiver.requests() == []


# --- Messages -------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_finished_job_makes_one_message_per_endpoint_that_wants_its_event_and_its_own_url(
    reachable, user, other_user, queued
):
    wants_all, _ = webhook_endpoint_create(owner=user, url="http://127.0.0.1:9/all")
    failures_only, _ = webhook_endpoint_create(
        owner=user, url="http://127.0.0.1:9/failed", events=["conversion.failed"]
    )
    webhook_endpoint_create(owner=user, url="http://127.0.0.1:9/off", active=False)
    webhook_endpoint_create(owner=other_user, url="http://127.0.0.1:9/theirs")
    done = finished_job(user, webhook_url="http://127.0.0.1:9/this-job")
    assert CHANNELS["webhook"].applies_to(done)
    made = webhook_deliveries_create(conversion=done)
    assert {(d.target, d.event) for d in made} == {(f"endpoint:{wants_all.pk}", "conversion.done"),
                                                   ("job", "conversion.done")}
    assert queued == [d.pk for d in made]
    assert webhook_deliveries_create(conversion=done) == [] and len(queued) == 2  # made once per job attempt

    failed = finished_job(user, status=Conversion.Status.FAILED)
    assert {d.endpoint_id for d in webhook_deliveries_create(conversion=failed)} == {wants_all.pk, failures_only.pk}
    assert not CHANNELS["webhook"].applies_to(finished_job(other_user, status=Conversion.Status.CANCELLED))


@pytest.mark.django_db
def test_the_body_is_the_event_its_time_and_the_job_as_the_api_shows_it(reachable, user, queued):
    webhook_endpoint_create(owner=user, url="http://127.0.0.1:9/hook")
    job = finished_job(user)
    [delivery] = webhook_deliveries_create(conversion=job)
    body = json.loads(delivery.body)
    assert body["type"] == "conversion.done"
    assert body["timestamp"] == job.finished_at.isoformat().replace("+00:00", "Z")
    data = body["data"]
    assert data["id"] == str(job.pk) and data["status"] == "done" and data["error"] is None
    assert data["download_url"] == f"http://testserver/api/conversions/{job.pk}/download/"  # PUBLIC_BASE_URL

    failed = finished_job(user, status=Conversion.Status.FAILED)
    [delivery] = webhook_deliveries_create(conversion=failed)
    body = json.loads(delivery.body)
    assert body["type"] == "conversion.failed"
    assert body["data"]["error"] == {"code": "no_audio_stream", "message": "The file has no audio."}


# --- Sending -------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_500_then_200_is_delivered_once_and_both_tries_are_logged(endpoint, user, receiver, queued):
    receiver.statuses = [500]
    delivery = message_for(endpoint, finished_job(user))

    sent = webhook_delivery_send(delivery_id=delivery.pk)
    assert (sent.outcome, sent.wait) == (Outcome.RETRY, 5)
    waiting = WebhookDelivery.objects.get(pk=delivery.pk)
    assert waiting.state == State.PENDING and waiting.next_try_at > timezone.now() + timedelta(seconds=3)
    # A copy of the task that comes early changes nothing.
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.SETTLED

    make_due(delivery)
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.SETTLED  # and only once
    first, second = receiver.requests()
    assert (first.answered, second.answered) == (500, 200)
    for request in (first, second):  # both verified by the library, one message: the same id and body
        assert request.payload["type"] == "conversion.done" and request.verified_with == endpoint.secret
        assert request.headers["webhook-id"] == message_id(delivery)
        assert request.body == delivery.body.encode()
    one, two = attempts(delivery)
    assert (one.number, one.status_code, two.number, two.status_code) == (1, 500, 2, 200)
    assert one.error == "The server at 127.0.0.1 answered 500 Internal Server Error."
    assert one.next_try_at is not None and two.error == "" and two.next_try_at is None
    assert one.duration_ms is not None and two.finished_at is not None
    delivered = WebhookDelivery.objects.get(pk=delivery.pk)
    assert (delivered.state, delivered.tries, delivered.failures) == (State.DELIVERED, 2, 0)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).failing_since is None  # the success ended the run


@pytest.mark.django_db
def test_a_receiver_that_is_down_and_then_back_gets_the_message(reachable, user, receiver, queued):
    endpoint, secret = webhook_endpoint_create(owner=user, url=receiver.url)  # nothing listens there yet
    receiver.secrets.append(secret)
    delivery = message_for(endpoint, finished_job(user))
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.RETRY
    [down] = attempts(delivery)
    assert down.status_code is None and down.error == (
        "The server at 127.0.0.1 refused the connection, or could not be reached."
    )
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).failing_since is not None

    receiver.start()
    make_due(delivery)
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    [back] = receiver.requests()
    assert back.payload is not None and back.answered == 200


@pytest.mark.django_db
def test_a_redirect_is_not_followed(endpoint, user, receiver, queued):
    receiver.statuses = [302]
    delivery = message_for(endpoint, finished_job(user))
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.RETRY
    assert [request.answered for request in receiver.requests()] == [302]
    assert attempts(delivery)[0].error == "The server at 127.0.0.1 answered 302 Found."


@pytest.mark.django_db
def test_the_schedule_grows_and_ends_in_giving_up(endpoint, user, receiver, queued):
    receiver.statuses = [503, 502, 500, 500]
    delivery = message_for(endpoint, finished_job(user))
    waits = []
    with Moved() as moved:
        for _ in range(4):
            make_due(delivery)
            sent = webhook_delivery_send(delivery_id=delivery.pk)
            waits.append((sent.outcome, sent.wait))
    # Each try is counted by how it ended (mp3converter_webhook_deliveries_total, which an alert watches).
    tries = "mp3converter_webhook_deliveries_total"
    assert (moved(tries, outcome="retry"), moved(tries, outcome="failed"), moved(tries, outcome="sent")) == (3, 1, 0)
    assert waits == [(Outcome.RETRY, 5), (Outcome.RETRY, 60), (Outcome.RETRY, 600), (Outcome.FAILED, None)]
    given_up = WebhookDelivery.objects.get(pk=delivery.pk)
    assert (given_up.state, given_up.tries, given_up.next_try_at) == (State.FAILED, 4, None)
    assert [attempt.next_try_at is None for attempt in attempts(delivery)] == [False, False, False, True]

    # Replayed by its owner: sent again now, the same message, with a fresh schedule.
    webhook_delivery_redeliver(delivery=given_up)
    assert queued[-1] == delivery.pk
    with Moved() as moved:
        assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    assert moved.total(tries) == moved(tries, outcome="sent") == 1
    assert receiver.requests()[-1].headers["webhook-id"] == message_id(delivery)
    assert WebhookDelivery.objects.get(pk=delivery.pk).tries == 5


@pytest.mark.django_db
def test_410_disables_the_endpoint_and_ends_the_message(endpoint, user, receiver, queued):
    receiver.statuses = [410]
    delivery = message_for(endpoint, finished_job(user))
    later = message_for(endpoint, finished_job(user))
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.FAILED
    gone = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (gone.active, gone.disabled_reason) == (False, WebhookEndpoint.Disabled.GONE)
    assert WebhookDelivery.objects.get(pk=delivery.pk).state == State.FAILED
    assert attempts(delivery)[0].status_code == 410
    # Nothing more goes to it, and a finished job makes no message for it.
    assert webhook_delivery_send(delivery_id=later.pk).outcome is Outcome.SETTLED
    assert attempts(later)[0].error == "Not sent: the endpoint is disabled."
    assert len(receiver.requests()) == 1
    assert webhook_deliveries_create(conversion=finished_job(user)) == []
    with pytest.raises(InvalidState):
        webhook_delivery_redeliver(delivery=WebhookDelivery.objects.get(pk=delivery.pk))
    # Its owner enables it again: replays work.
    webhook_endpoint_update(endpoint=gone, active=True)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).disabled_reason == ""
    webhook_delivery_redeliver(delivery=WebhookDelivery.objects.get(pk=delivery.pk))
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT


@pytest.mark.django_db
def test_an_endpoint_failing_for_three_days_is_disabled_and_its_owner_emailed(
    endpoint, user, receiver, queued, django_capture_on_commit_callbacks, mailoutbox
):
    receiver.statuses = [500, 500]
    first = message_for(endpoint, finished_job(user))
    webhook_delivery_send(delivery_id=first.pk)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).active  # failing since now: not for long yet
    since = timezone.now() - timedelta(hours=72, minutes=1)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=since)

    second = message_for(endpoint, finished_job(user))
    with django_capture_on_commit_callbacks() as published:
        webhook_delivery_send(delivery_id=second.pk)
    disabled = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (disabled.active, disabled.disabled_reason) == (False, WebhookEndpoint.Disabled.FAILING)
    assert len(published) == 1  # the email, queued for the notify worker

    # The email that task sends.
    context = {"url": disabled.url, "since": f"{since:%Y-%m-%d %H:%M} UTC"}
    assert account_email_send(user_id=user.pk, kind="webhook_disabled", context=context)
    [email] = mailoutbox
    assert (email.subject, email.to) == ("Your webhook endpoint was disabled", [user.email])
    assert disabled.url in email.body and "since" in email.body


@pytest.mark.django_db
def test_a_rotated_secret_signs_beside_the_new_one_for_a_while(endpoint, user, receiver, queued):
    old = endpoint.secret
    new = webhook_endpoint_rotate_secret(endpoint=endpoint)
    assert new != old and new.startswith("whsec_")
    receiver.secrets[:] = [new]
    delivery = message_for(endpoint, finished_job(user))
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    [request] = receiver.requests()
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    receiver.secrets[:] = [old]  # a receiver not switched yet verifies it too
    assert receiver.verify(request.body, request.headers)[1] == old


@pytest.mark.django_db
def test_a_jobs_own_url_is_signed_with_the_accounts_job_secret(reachable, user, receiver, queued):
    receiver.start()
    secret = job_webhook_secret_rotate(owner=user)  # made, and shown
    receiver.secrets.append(secret)
    [delivery] = webhook_deliveries_create(conversion=finished_job(user, webhook_url=receiver.url))
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    [request] = receiver.requests()
    assert request.verified_with == secret and request.payload["data"]["webhook_url"] == receiver.url


@pytest.mark.django_db
def test_a_try_whose_worker_died_is_taken_over_once_its_claim_expires(endpoint, user, receiver, queued):
    delivery = message_for(endpoint, finished_job(user))
    claimed_at = timezone.now() - timedelta(seconds=5)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state=State.CLAIMED, claimed_at=claimed_at, tries=1)
    WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=claimed_at)
    busy = webhook_delivery_send(delivery_id=delivery.pk)
    assert busy.outcome is Outcome.BUSY and 0 < busy.wait <= 2 * 2 + 5 + 1  # until the claim expires

    WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_at=timezone.now() - timedelta(minutes=1))
    assert webhook_delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    interrupted, sent = attempts(delivery)
    assert interrupted.error == INTERRUPTED and sent.status_code == 200


@pytest.mark.django_db
def test_the_reconciler_publishes_a_message_due_and_lost(reachable, user, queued, settings):
    webhook_endpoint_create(owner=user, url="http://127.0.0.1:9/hook")
    [delivery] = webhook_deliveries_create(conversion=finished_job(user))
    queued.clear()
    assert not notifications_reconcile().webhooks  # just made: its message is on its way
    later = timezone.now() + timedelta(seconds=settings.STALE_JOB_SECONDS + 1)
    assert notifications_reconcile(now=later).webhooks == [delivery.pk]
    assert queued == [delivery.pk]
    assert not notifications_reconcile(now=later).webhooks  # once
