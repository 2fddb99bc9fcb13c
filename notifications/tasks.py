"""Celery tasks for notifications: thin wrappers that take ids and call a service."""

import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.db import InterfaceError, OperationalError

from mp3converter.joblog import job_context

logger = logging.getLogger(__name__)

# A channel's network errors (SMTP's are OSErrors) and the database's: worth trying again.
TRANSIENT_ERRORS = (OSError, OperationalError, InterfaceError)
DELIVERY_MAX_RETRIES = 10


# The name from before this app existed: messages already queued (by a running chain) carry it.
@shared_task(name="conversions.tasks.notify_owner_task")
def notify_owner_task(conversion_id: str, attempt: int | None = None) -> None:
    """The chain's step after `convert`: queue a delivery per channel for the finished attempt."""
    from .services import notifications_dispatch

    with job_context(conversion_id):
        notifications_dispatch(conversion_id=conversion_id, attempt=attempt)


@shared_task(bind=True, max_retries=DELIVERY_MAX_RETRIES)
def deliver_notification_task(self, delivery_id: int, conversion_id: str) -> None:
    """Send one delivery; transient errors are tried again with growing, jittered backoff (5 s … 10 minutes)."""
    from .services import delivery_fail, delivery_send

    with job_context(conversion_id):
        try:
            delivery_send(delivery_id=delivery_id)
        except TRANSIENT_ERRORS as exc:
            if self.request.retries >= self.max_retries:
                logger.exception("delivery %s: giving up after %d retries", delivery_id, self.request.retries)
                delivery_fail(delivery_id=delivery_id, error=repr(exc))
                return
            countdown = get_exponential_backoff_interval(
                factor=5, retries=self.request.retries, maximum=600, full_jitter=True
            )
            raise self.retry(exc=exc, countdown=countdown) from exc
        except Exception as exc:
            # A bug, not a flaky server: record it instead of leaving the delivery claimed.
            logger.exception("delivery %s: unexpected error", delivery_id)
            delivery_fail(delivery_id=delivery_id, error=repr(exc))
