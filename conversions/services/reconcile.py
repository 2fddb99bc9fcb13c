"""The reconciler: finds jobs whose message was lost, and queues them again.

A message can be lost. kombu's filesystem transport (the `make run` default) keeps an unacknowledged message only in
the process that consumes it, so a worker killed mid-job takes its job's message with it; a broker can lose a queue;
a publish can fail after its row was committed. The row is the truth, so the reconciler compares it with the broker:

- a `processing` (or `fetching`) job whose heartbeat is older than STALE_JOB_SECONDS has lost its worker. It goes back to `queued` as
  a new attempt, so the old worker, should it be alive after all, can change nothing any more (every write of the
  convert task is fenced by the attempt). That counts as a redelivery: past CONVERSION_MAX_REDELIVERIES the job fails
  instead, and its owner is told.
- `queued` jobs waiting longer than STALE_JOB_SECONDS while the broker holds fewer convert messages than there are
  queued jobs: the longest-waiting of them, as many as messages are missing, are published again. A duplicate is
  harmless: the convert task claims a queued job once. A backlog (a message for every queued job) is left alone.
- A URL job whose source is not fetched yet is published with its fetch step (`fetch → convert → notify`), so a lost
  fetch is downloaded again; the fetch and convert queues' messages are counted together.

Every change is a conditional update on the row as it was read, so reconcilers running at once in several workers
requeue each job once; running it again changes nothing more. Convert workers run it when they start and every
RECONCILE_INTERVAL_SECONDS (mp3converter/celery.py).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from mp3converter.joblog import job_context
from mp3converter.metrics import conversion_finished_observed, redelivery_observed

from ..filenames import output_name
from ..models import Conversion
from ..storage import STORAGE_ERRORS
from .lifecycle import conversion_enqueue
from .processing import redelivery_limit_error

logger = logging.getLogger(__name__)

Status = Conversion.Status
CONVERT_QUEUE = "convert"
# Queued jobs wait on either: URL jobs not fetched yet on `fetch`, the others on `convert`.
WAITING_QUEUES = ("fetch", CONVERT_QUEUE)
# Jobs looked at per run: a run stays short; the next one takes the rest.
BATCH = 500


@dataclass
class Reconciled:
    """What one run did, by job id."""

    requeued: list[uuid.UUID] = field(default_factory=list)  # processing, lost its worker: queued as a new attempt
    failed: list[uuid.UUID] = field(default_factory=list)  # ...past the redelivery limit: failed
    republished: list[uuid.UUID] = field(default_factory=list)  # queued, lost its message: published again

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.republished)


def conversion_reconcile(*, now: datetime | None = None) -> Reconciled:
    """Queue again every job whose worker or message was lost (see the module's docstring)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.STALE_JOB_SECONDS)
    done = Reconciled()
    _requeue_stale_processing(cutoff=cutoff, now=now, done=done)
    _republish_lost_queued(cutoff=cutoff, now=now, done=done)
    return done


def convert_messages_waiting() -> int:
    """Messages waiting in the broker's fetch and convert queues (not those a worker holds), by a passive
    queue_declare: on RabbitMQ and on kombu's virtual transports (the filesystem one) alike. A queue the broker lost
    counts 0."""
    from mp3converter.celery import app

    waiting = 0
    for queue in WAITING_QUEUES:
        # A channel that met NOT_FOUND is closed by the broker: a connection per queue.
        with app.connection_for_write() as connection:
            try:
                waiting += connection.default_channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors:
                pass  # NOT_FOUND: publishing declares the queue again
    return waiting


def _needs_fetch(job: dict) -> bool:
    """A URL job whose source is not stored yet: its chain starts with the fetch step."""
    return bool(job["source_url"]) and not job["source"]


def _as_read(job: dict) -> Q:
    """The row still as it was read: nobody claimed, requeued or finished it meanwhile."""
    heartbeat = Q(heartbeat_at__isnull=True) if job["heartbeat_at"] is None else Q(heartbeat_at=job["heartbeat_at"])
    return Q(pk=job["id"], status=job["status"], attempt=job["attempt"]) & heartbeat


def _requeue_stale_processing(*, cutoff: datetime, now: datetime, done: Reconciled) -> None:
    stale = (
        Conversion.objects.filter(status__in=[Status.FETCHING, Status.PROCESSING])
        .annotate(last_sign=Coalesce("heartbeat_at", "started_at", "created_at"))
        .filter(last_sign__lt=cutoff)
        .order_by("last_sign")
        .values("id", "status", "attempt", "heartbeat_at", "redeliveries", "source", "source_url")[:BATCH]
    )
    for job in stale:
        with job_context(job["id"]):
            rows = Conversion.objects.filter(_as_read(job))
            redeliveries = job["redeliveries"] + 1
            if redeliveries > settings.CONVERSION_MAX_REDELIVERIES:
                _fail(rows, job, redeliveries, now, done)
                continue
            requeued = rows.update(
                status=Status.QUEUED, attempt=F("attempt") + 1, redeliveries=F("redeliveries") + 1, progress=0,
                started_at=None, heartbeat_at=now,
            )
            if not requeued:
                continue  # another reconciler, or the job's own worker, got there first
            redelivery_observed(by="reconciler")
            logger.warning(
                "conversion %s: %s with no sign of life since %s, queued again as attempt %d (redelivery %d)",
                job["id"], job["status"], job["heartbeat_at"], job["attempt"] + 1, redeliveries,
            )
            done.requeued.append(job["id"])
            _discard_output(job)
            _publish(job["id"], job["attempt"] + 1, fetch=_needs_fetch(job))


def _fail(rows, job: dict, redeliveries: int, now: datetime, done: Reconciled) -> None:
    error = redelivery_limit_error(redeliveries)
    failed = rows.update(
        status=Status.FAILED, redeliveries=redeliveries, error_code=error.code, error_message=error.message,
        error_detail=error.detail, finished_at=now,
    )
    if not failed:
        return
    conversion_finished_observed(status=Status.FAILED, error_code=error.code)
    logger.warning("conversion %s: lost its worker %d times, failed", job["id"], redeliveries)
    done.failed.append(job["id"])
    _discard_output(job)
    # The owner is told, as the chain's notify step would have done after a failed conversion.
    from notifications.tasks import notify_owner_task

    try:
        notify_owner_task.si(str(job["id"]), job["attempt"]).apply_async()
    except BrokerError as exc:
        logger.error("conversion %s: could not queue the failure notice: %r", job["id"], exc)


def _discard_output(job: dict) -> None:
    """The attempt that lost its worker may have stored its MP3 before it died: nothing will ever point at it."""
    try:
        default_storage.delete(output_name(job["id"], job["attempt"]))
    except STORAGE_ERRORS as exc:
        logger.warning("conversion %s: could not remove attempt %d's MP3: %r", job["id"], job["attempt"], exc)


def _republish_lost_queued(*, cutoff: datetime, now: datetime, done: Reconciled) -> None:
    queued = Conversion.objects.filter(status=Status.QUEUED)
    total = queued.count()
    if not total:
        return
    missing = total - convert_messages_waiting()
    if missing <= 0:
        return  # a message for every queued job: a backlog, not a loss
    waiting = (
        queued.annotate(since=Coalesce("heartbeat_at", "created_at"))
        .filter(since__lt=cutoff)
        .order_by("since")
        .values("id", "status", "attempt", "heartbeat_at", "source", "source_url")[: min(missing, BATCH)]
    )
    for job in waiting:
        with job_context(job["id"]):
            # The heartbeat of a queued job is when it was last queued: the next run leaves it alone for a while.
            if not Conversion.objects.filter(_as_read(job)).update(heartbeat_at=now):
                continue
            logger.warning(
                "conversion %s: queued since %s with fewer fetch and convert messages than queued jobs, published again",
                job["id"], job["heartbeat_at"] or "its upload",
            )
            done.republished.append(job["id"])
            _publish(job["id"], job["attempt"], fetch=_needs_fetch(job))


def _publish(conversion_id: uuid.UUID, attempt: int, *, fetch: bool = False) -> None:
    try:
        conversion_enqueue(conversion_id=conversion_id, attempt=attempt, fetch=fetch)
    except BrokerError as exc:
        # The row says queued: a later run publishes it again once the broker is back.
        logger.error("conversion %s: could not publish attempt %d: %r", conversion_id, attempt, exc)
