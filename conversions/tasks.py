"""Celery tasks: thin wrappers that load by id and call a service."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init
from django.db import InterfaceError, OperationalError

from mp3converter.errors import InternalError
from mp3converter.joblog import job_context

from .storage import STORAGE_ERRORS

logger = logging.getLogger(__name__)

# Errors of the storage (folder, GridFS, S3), database or network: worth retrying. Bad media never raises these (it
# fails the job). An S3 ClientError may be a denied request too: retried like a folder that is not writable.
TRANSIENT_ERRORS = (*STORAGE_ERRORS, OperationalError, InterfaceError)
CONVERT_MAX_RETRIES = 5


@worker_process_init.connect
def _sweep_stale_workdirs(**kwargs) -> None:
    # A new pool process often replaces one that was killed mid-conversion: clear what that one left behind.
    from .workdirs import workdirs_sweep

    workdirs_sweep()


@shared_task(bind=True, max_retries=CONVERT_MAX_RETRIES)
def convert_video_task(self, conversion_id: str, attempt: int | None = None) -> None:
    with job_context(conversion_id):
        _convert(self, conversion_id, attempt)


def _convert(task, conversion_id: str, attempt: int | None) -> None:
    from .engine import ConversionTimeout
    from .services import conversion_convert, conversion_mark_failed

    try:
        # RabbitMQ flags a message it hands out again after its consumer died without acknowledging it.
        redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
        conversion_convert(conversion_id=conversion_id, attempt=attempt, redelivered=redelivered)
    except SoftTimeLimitExceeded:
        conversion_mark_failed(conversion_id=conversion_id, attempt=attempt, error=ConversionTimeout())
    except TRANSIENT_ERRORS as exc:
        if task.request.retries >= task.max_retries:
            logger.exception("conversion %s: giving up after %d retries", conversion_id, task.request.retries)
            conversion_mark_failed(conversion_id=conversion_id, attempt=attempt, error=InternalError(detail=repr(exc)))
            return
        # Exponential backoff with a cap: 10 s, 20 s, 40 s, ... at most 5 minutes.
        raise task.retry(exc=exc, countdown=min(300, 10 * 2**task.request.retries)) from exc
    except Exception as exc:
        # A bug rather than bad media or a flaky service: fail the job (the owner is told and it can be retried)
        # instead of leaving it "processing" forever.
        logger.exception("conversion %s: unexpected error", conversion_id)
        conversion_mark_failed(conversion_id=conversion_id, attempt=attempt, error=InternalError(detail=repr(exc)))
