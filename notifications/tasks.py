"""Celery tasks for notifications: thin wrappers that take ids and call a service."""

import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from kombu.exceptions import OperationalError as BrokerError

from mp3converter.joblog import job_context

from .services import CLAIM_TIMEOUT, TRANSIENT_ERRORS

logger = logging.getLogger(__name__)

DELIVERY_MAX_RETRIES = 10


def backoff(retries: int) -> float:
    """Growing, jittered waits between tries: up to 5 s, 10 s, 20 s … at most 10 minutes."""
    return get_exponential_backoff_interval(factor=5, retries=retries, maximum=600, full_jitter=True)


# The name from before this app existed: messages already queued (by a running chain) carry it.
@shared_task(
    name="conversions.tasks.notify_owner_task",
    autoretry_for=(*TRANSIENT_ERRORS, BrokerError),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=DELIVERY_MAX_RETRIES,
)
def notify_owner_task(conversion_id: str, attempt: int | None = None) -> None:
    """The chain's step after `convert`: a delivery per channel for the finished attempt, each queued. Safe to
    retry: deliveries that exist are not made twice."""
    from .services import notifications_dispatch

    with job_context(conversion_id):
        notifications_dispatch(conversion_id=conversion_id, attempt=attempt)


@shared_task(bind=True, max_retries=DELIVERY_MAX_RETRIES)
def deliver_notification_task(self, delivery_id: int, conversion_id: str) -> None:
    """Send one delivery. Transient errors are tried again with backoff; a delivery another worker is sending is
    looked at again once that worker's claim has expired."""
    from .services import Outcome, delivery_fail, delivery_send

    last_try = self.request.retries >= self.max_retries
    with job_context(conversion_id):
        try:
            outcome = delivery_send(delivery_id=delivery_id, last_try=last_try)
        except TRANSIENT_ERRORS as exc:
            if last_try:
                logger.error("delivery %s: giving up after %d retries: %r", delivery_id, self.request.retries, exc)
                delivery_fail(delivery_id=delivery_id, error=repr(exc))
                raise
            raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc
        except Exception as exc:
            # A bug, not a flaky server: the delivery is marked failed (by the service, or here if it never began).
            logger.exception("delivery %s: unexpected error", delivery_id)
            delivery_fail(delivery_id=delivery_id, error=repr(exc))
            raise
        if outcome is Outcome.BUSY and not last_try:
            raise self.retry(countdown=CLAIM_TIMEOUT.total_seconds() + 1)
