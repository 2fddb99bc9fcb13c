"""Celery tasks: thin wrappers that load by id and call a service: the chain's fetch step (URL jobs only, on the
`fetch` queue) and its convert step; and the retention sweep, which the workers' timer publishes when one is due."""

import logging
import uuid
from datetime import timedelta

from celery import shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.signals import worker_process_init
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from mp3converter.errors import InternalError
from mp3converter.joblog import job_context
from mp3converter.metrics import storage_error_observed

from .storage import STORAGE_ERRORS

logger = logging.getLogger(__name__)

# Errors of the storage (folder, GridFS, S3), database or network: worth retrying. Bad media never raises these (it
# fails the job). An S3 ClientError may be a denied request too: retried like a folder that is not writable.
TRANSIENT_ERRORS = (*STORAGE_ERRORS, OperationalError, InterfaceError)
CONVERT_MAX_RETRIES = 5
# Ids and attempts fit the database's columns; anything else in a message is forged or corrupt.
MAX_ID = 2**31 - 1
LOGGED_ARGUMENT_CHARS = 80


def logged(value) -> str:
    """A message argument as it may appear in a log line: repr-escaped (no newline gets through) and truncated."""
    text = repr(value)
    return text if len(text) <= LOGGED_ARGUMENT_CHARS else text[:LOGGED_ARGUMENT_CHARS] + "…"


def checked_job_id(task, conversion_id) -> str:
    """The job id of a message as a UUID string; a message with anything else is logged safely and dropped
    (Reject without requeue: no retry, no redelivery loop)."""
    try:
        if isinstance(conversion_id, str) and len(conversion_id) <= 45:
            return str(uuid.UUID(conversion_id))
    except ValueError:
        pass
    return _drop(task, "job id", conversion_id)


def checked_number(task, name: str, value, *, optional: bool = False) -> int | None:
    """A message's attempt or delivery id: a positive whole number (None where `optional`); else the message is
    dropped."""
    if value is None and optional:
        return None
    if type(value) is int and 0 < value <= MAX_ID:
        return value
    return _drop(task, name, value)


def _drop(task, name: str, value):
    logger.error("%s: dropped a message with an invalid %s: %s", task.name, name, logged(value))
    raise Reject(f"invalid {name}", requeue=False)


@worker_process_init.connect
def _sweep_stale_workdirs(**kwargs) -> None:
    # A new pool process often replaces one that was killed mid-conversion: clear what that one left behind.
    from .workdirs import workdirs_sweep

    workdirs_sweep()


@shared_task(bind=True, max_retries=CONVERT_MAX_RETRIES)
def fetch_source_task(self, conversion_id: str, attempt: int | None = None) -> None:
    from .services import conversion_fetch

    conversion_id = checked_job_id(self, conversion_id)
    attempt = checked_number(self, "attempt", attempt, optional=True)
    with job_context(conversion_id):
        _run_step(self, conversion_fetch, conversion_id, attempt)


@shared_task(bind=True, max_retries=CONVERT_MAX_RETRIES)
def convert_video_task(self, conversion_id: str, attempt: int | None = None) -> None:
    from .services import conversion_convert

    conversion_id = checked_job_id(self, conversion_id)
    attempt = checked_number(self, "attempt", attempt, optional=True)
    with job_context(conversion_id):
        _run_step(self, conversion_convert, conversion_id, attempt)


@shared_task
def sweep_retention_task() -> None:
    """The retention sweep (conversions/services/retention.py), on the maintenance queue, which the fetch role
    consumes: published by the workers' reconciler timer (mp3converter/celery.py); does nothing if another ran in the
    last RETENTION_SWEEP_MINUTES. Idempotent, so a redelivery is harmless; what it leaves undone, the next one does."""
    from .services import retention_sweep

    retention_sweep(scheduled=True)


def _run_step(task, step, conversion_id: str, attempt: int | None) -> None:
    """Run one step's service; transient errors retry with backoff, anything unexpected fails the job."""
    from .engine import ConversionTimeout
    from .services import conversion_heartbeat, conversion_mark_failed

    try:
        # RabbitMQ flags a message it hands out again after its consumer died without acknowledging it.
        redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
        step(conversion_id=conversion_id, attempt=attempt, redelivered=redelivered, retrying=task.request.retries > 0)
    except SoftTimeLimitExceeded:
        conversion_mark_failed(conversion_id=conversion_id, attempt=attempt, error=ConversionTimeout())
    except TRANSIENT_ERRORS as exc:
        if isinstance(exc, STORAGE_ERRORS):
            storage_error_observed()
        if task.request.retries >= task.max_retries:
            logger.exception("conversion %s: giving up after %d retries", conversion_id, task.request.retries)
            conversion_mark_failed(conversion_id=conversion_id, attempt=attempt, error=InternalError(detail=repr(exc)))
            return
        # Exponential backoff with a cap: 10 s, 20 s, 40 s, ... at most 5 minutes.
        countdown = min(300, 10 * 2**task.request.retries)
        try:
            # The job is alive until its retry: the reconciler must not take it for lost meanwhile.
            conversion_heartbeat(
                conversion_id=conversion_id, attempt=attempt, at=timezone.now() + timedelta(seconds=countdown)
            )
        except DatabaseError:
            pass  # the database is what failed: the retry finds out more
        raise task.retry(exc=exc, countdown=countdown) from exc
    except Exception as exc:
        # A bug rather than bad media or a flaky service: fail the job (the owner is told and it can be retried)
        # instead of leaving it "processing" forever.
        logger.exception("conversion %s: unexpected error", conversion_id)
        conversion_mark_failed(conversion_id=conversion_id, attempt=attempt, error=InternalError(detail=repr(exc)))
