"""A notify worker killed with kill -9 while a webhook is being sent: the broker hands the message back, the next
worker waits for the dead one's claim to expire, and the receiver gets the message (the same webhook-id, verified
with the standardwebhooks library). Real worker processes, RabbitMQ, MariaDB and an HTTP receiver."""

import pytest
from django.utils import timezone

from conversions.models import Conversion
from notifications.models import WebhookAttempt, WebhookDelivery
from notifications.services import notifications_dispatch
from notifications.webhook_sending import INTERRUPTED
from notifications.webhooks import webhook_endpoint_create
from tests.factories import ConversionFactory
from tests.faults.helpers import kill_worker_group
from tests.fixtures.workers import NOTIFY_WORKER_ENV, start_worker, stop_worker
from tests.utils import wait_for

pytestmark = [pytest.mark.faults]
State = WebhookDelivery.State


@pytest.fixture
def notify_worker(session_notify_worker_stopped, tmp_path):
    started = []

    def start():
        # A timeout long enough that the kill lands while the worker still waits for the answer (the claim lasts
        # twice the timeout and 5 s: the next worker sends it after 15 s).
        env = {**NOTIFY_WORKER_ENV, "WEBHOOK_TIMEOUT": "5"}
        started.append(start_worker("notify-worker", tmp_path, start_new_session=True, **env))
        return started[-1]

    yield start
    for worker in started:
        if worker.process.poll() is None:
            stop_worker(worker)


def test_kill9_of_the_notify_worker_mid_delivery_still_ends_in_a_delivery(notify_worker, settings, user, receiver):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    receiver.start()
    receiver.hold.set()  # the first request is held, unanswered, while the worker waits for it
    endpoint, secret = webhook_endpoint_create(owner=user, url=receiver.url)
    receiver.secrets.append(secret)
    job = ConversionFactory(owner=user, status=Conversion.Status.DONE, finished_at=timezone.now(),
                            duration_seconds=2.0)
    worker = notify_worker()
    notifications_dispatch(conversion_id=job.pk)

    wait_for(receiver.requests, timeout=60, message="the webhook to reach the receiver")
    [running] = WebhookAttempt.objects.filter(delivery__endpoint=endpoint)
    assert running.finished_at is None
    kill_worker_group(worker)
    receiver.release.set()  # the held request ends; nobody reads its answer
    assert WebhookDelivery.objects.get(endpoint=endpoint).state == State.CLAIMED

    notify_worker()  # the broker hands the unacknowledged message to it; the dead worker's claim expires first

    def delivered():
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        return delivery if delivery.state == State.DELIVERED else None

    sent = wait_for(delivered, timeout=60, message="the webhook to be delivered after the kill")
    first, second = receiver.requests()
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{sent.message_id.hex}"
    assert second.payload["data"]["id"] == str(job.pk) and second.answered == 200
    interrupted, done = WebhookAttempt.objects.filter(delivery=sent).order_by("number")
    assert (interrupted.error, done.status_code, sent.tries) == (INTERRUPTED, 200, 2)
