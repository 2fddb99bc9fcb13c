"""Celery tasks for notifications: thin wrappers that take ids and call a service."""

import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from kombu.exceptions import OperationalError as BrokerError

from conversions.tasks import checked_job_id, checked_number
from mp3converter.joblog import job_context

from .services import CLAIM_TIMEOUT, TRANSIENT_ERRORS

logger = logging.getLogger(__name__)

# The notify step's retries, as before the notifications app.
NOTIFY_MAX_RETRIES = 10


def backoff(retries: int) -> float:
    """Growing, jittered waits between tries: up to 5 s, 10 s, 20 s … at most 10 minutes."""
    return get_exponential_backoff_interval(factor=5, retries=retries, maximum=600, full_jitter=True)


# The name from before this app existed: messages already queued (by a running chain) carry it.
@shared_task(
    bind=True,
    name="conversions.tasks.notify_owner_task",
    autoretry_for=(*TRANSIENT_ERRORS, BrokerError),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=NOTIFY_MAX_RETRIES,
)
def notify_owner_task(self, conversion_id: str, attempt: int | None = None) -> None:
    """The chain's step after `convert`: a delivery per channel for the finished attempt, each queued. Safe to
    retry: deliveries that exist are not made twice. A message with a forged id or attempt is logged and dropped."""
    from .services import notifications_dispatch

    conversion_id = checked_job_id(self, conversion_id)
    attempt = checked_number(self, "attempt", attempt, optional=True)
    with job_context(conversion_id):
        notifications_dispatch(conversion_id=conversion_id, attempt=attempt)


class DeliveryFailed(Exception):
    """The delivery was given up (its error is on the delivery): the task ends as a failure, as Flower shows it."""


@shared_task(bind=True, max_retries=None)
def deliver_notification_task(self, delivery_id: int, conversion_id: str) -> None:
    """Send one delivery. A channel that fails is tried again with backoff until the delivery is given up; the
    database failing, or a worker holding the delivery, is waited out, however long it takes. A message with a
    forged id is logged and dropped."""
    from .services import Outcome, delivery_send

    delivery_id = checked_number(self, "delivery id", delivery_id)
    conversion_id = checked_job_id(self, conversion_id)
    with job_context(conversion_id):
        countdown = backoff(self.request.retries)  # recorded on the delivery should this try fail
        try:
            outcome = delivery_send(delivery_id=delivery_id, retry_in=countdown)
        except TRANSIENT_ERRORS as exc:
            raise self.retry(exc=exc, countdown=countdown) from exc
    if outcome is Outcome.RETRY:
        raise self.retry(countdown=countdown)
    if outcome is Outcome.BUSY:
        raise self.retry(countdown=CLAIM_TIMEOUT.total_seconds() + 1)
    if outcome is Outcome.FAILED:
        raise DeliveryFailed(f"delivery {delivery_id} given up")


# Longer waits are not held in a worker as a countdown (RabbitMQ's consumer_timeout closes a channel holding a message
# unacknowledged for 30 minutes by default): the reconciler publishes the message once it is due.
WEBHOOK_MAX_COUNTDOWN = 900


@shared_task(bind=True, max_retries=None)
def deliver_webhook_task(self, delivery_id: int, conversion_id: str) -> None:
    """Try one webhook message, and come back when its next try is due (WEBHOOK_RETRY_SCHEDULE) or its claim has
    expired. The database failing is waited out. A message with a forged id is logged and dropped."""
    from .webhook_sending import webhook_delivery_send

    delivery_id = checked_number(self, "delivery id", delivery_id)
    conversion_id = checked_job_id(self, conversion_id)
    with job_context(conversion_id):
        try:
            sent = webhook_delivery_send(delivery_id=delivery_id)
        except TRANSIENT_ERRORS as exc:
            raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc
    if sent.wait is not None and sent.wait <= WEBHOOK_MAX_COUNTDOWN:
        raise self.retry(countdown=sent.wait)
