"""Celery tasks: thin wrappers that load by id and call a service."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError
from pymongo.errors import PyMongoError

logger = logging.getLogger(__name__)

# Errors of the storage, database or network: worth retrying. Bad media never raises these (it fails the job).
TRANSIENT_ERRORS = (OSError, OperationalError, InterfaceError, PyMongoError)
CONVERT_MAX_RETRIES = 5
NOTIFY_MAX_RETRIES = 10
INTERNAL_ERROR_MESSAGE = "The conversion failed because of a problem on our side. Please try again later."


@shared_task(bind=True, max_retries=CONVERT_MAX_RETRIES)
def convert_video_task(self, conversion_id: str, attempt: int | None = None) -> None:
    from .engine import ConversionTimeout
    from .services import conversion_convert, conversion_mark_failed

    try:
        conversion_convert(conversion_id=conversion_id, attempt=attempt)
    except SoftTimeLimitExceeded:
        timeout = ConversionTimeout()
        conversion_mark_failed(
            conversion_id=conversion_id, attempt=attempt, code=timeout.code, message=timeout.message
        )
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            logger.exception("conversion %s: giving up after %d retries", conversion_id, self.request.retries)
            conversion_mark_failed(
                conversion_id=conversion_id,
                attempt=attempt,
                code="internal_error",
                message=INTERNAL_ERROR_MESSAGE,
                detail=repr(exc),
            )
            return
        # Exponential backoff with a cap: 10 s, 20 s, 40 s, ... at most 5 minutes.
        raise self.retry(exc=exc, countdown=min(300, 10 * 2**self.request.retries)) from exc
    except Exception as exc:
        # A bug rather than bad media or a flaky service: fail the job (the owner is told and it can be retried)
        # instead of leaving it "processing" forever.
        logger.exception("conversion %s: unexpected error", conversion_id)
        conversion_mark_failed(
            conversion_id=conversion_id, attempt=attempt, code="internal_error", message=INTERNAL_ERROR_MESSAGE,
            detail=repr(exc),
        )


@shared_task(
    bind=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=NOTIFY_MAX_RETRIES,
)
def notify_owner_task(self, conversion_id: str, attempt: int | None = None) -> None:
    from .services import conversion_notify

    conversion_notify(conversion_id=conversion_id, attempt=attempt)
