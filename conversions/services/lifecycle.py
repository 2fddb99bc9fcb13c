"""A job's life outside the converter: create (probe, store, queue: one path for a POST and a resumable upload),
enqueue, cancel, retry, fail, delete (with the tracks of a split job).

State changes are conditional updates on the row, so a redelivered task can neither repeat finished work nor move a
job backwards.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace

from celery import chain
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from mp3converter.errors import ConversionExpired, QueueUnavailable, ServiceError, StorageUnavailable
from mp3converter.metrics import conversion_finished_observed, storage_error_observed

from .. import engine
from ..filenames import clean_filename, stem
from ..models import Conversion, Track
from ..selectors import conversion_attempt_rows
from ..storage import STORAGE_ERRORS
from .quotas import owner_lock, quota_check, retry_check, upload_check, upload_record_create

logger = logging.getLogger(__name__)

Status = Conversion.Status
RETRY_EXPIRED = (
    "This conversion has expired: its uploaded file was removed after the time this service keeps it, so it can no "
    "longer be retried. Upload the video again."
)


def conversion_create(
    *, owner, upload: UploadedFile, options: engine.OutputOptions, webhook_url: str = ""
) -> Conversion:
    """Probe an upload, store it and queue its conversion (`webhook_url`: the job's own webhook, checked by the
    caller's input serializer). Raises a ServiceError for input that cannot work, or when the file store or the queue
    refuses (then nothing is kept)."""
    return conversion_admit(
        owner=owner,
        path=upload.temporary_file_path(),
        size=upload.size,
        filename=upload.name,
        options=options,
        webhook_url=webhook_url,
        store_source=lambda conversion: conversion.source.save(conversion.original_filename, upload, save=False),
    )


def conversion_admit(
    *,
    owner,
    path: str,
    size: int,
    filename: str,
    options: engine.OutputOptions,
    store_source: Callable[[Conversion], None],
    conversion_id: uuid.UUID | None = None,
    webhook_url: str = "",
) -> Conversion:
    """The one way in for a new job, whichever way its bytes came (a POST, or a resumable upload's last PATCH): check
    the account, probe the local file at `path`, have `store_source(conversion)` set the job's stored source, insert
    the row and queue it. Raises a ServiceError for input that cannot work, or when the file store or the queue
    refuses; then neither the row nor the stored source is kept."""
    # The account's gate and limits come first: a refused upload costs no probe.
    upload_check(user=owner, size=size)
    info = engine.probe(path, timeout=settings.PROBE_TIMEOUT, max_duration=settings.MAX_DURATION_MINUTES * 60)
    if not info.has_audio:
        raise engine.NoAudioStream()
    options.check_against(info)
    original_filename = clean_filename(filename)
    if options.title is None:
        options = replace(options, title=stem(original_filename)[: engine.TAG_MAX_LENGTH] or None)
    conversion = Conversion(
        id=conversion_id or uuid.uuid4(),
        owner=owner,
        original_filename=original_filename,
        source_size=size,
        options=options.as_dict(),
        webhook_url=webhook_url,
    )
    try:
        store_source(conversion)
    except STORAGE_ERRORS as exc:
        # The storages remove what they wrote of a failed save (GridFS and S3 abort, a folder's partial file goes).
        logger.warning("upload %s: could not store the source: %r", conversion.pk, exc)
        storage_error_observed()
        raise StorageUnavailable() from exc
    return _insert_and_enqueue(conversion, size=size)


def conversion_create_from_url(
    *, owner, source_url: str, options: engine.OutputOptions, webhook_url: str = ""
) -> Conversion:
    """Queue a job whose source is downloaded from `source_url` by the fetch step (conversions/services/fetching.py),
    which then probes it as an upload is probed. The account's gate and limits are checked now, as for an upload;
    the storage limit once more when the size is known."""
    from .fetching import url_filename

    upload_check(user=owner, size=None)
    original_filename = url_filename(source_url)
    if options.title is None:
        options = replace(options, title=stem(original_filename)[: engine.TAG_MAX_LENGTH] or None)
    conversion = Conversion(
        id=uuid.uuid4(), owner=owner, original_filename=original_filename, source_url=source_url,
        options=options.as_dict(), webhook_url=webhook_url,
    )
    return _insert_and_enqueue(conversion, size=None, fetch=True)


def _insert_and_enqueue(conversion: Conversion, *, size: int | None, fetch: bool = False) -> Conversion:
    """Insert a new job and queue it once the row is committed (with its fetch step first for a URL import)."""
    owner = conversion.owner
    try:
        with transaction.atomic():
            # The limits again, under a lock on the owner's row held until the commit: concurrent uploads of one
            # account check and insert one after another, so none passes on a count another is about to change.
            owner_lock(user=owner)
            quota_check(user=owner, size=size)
            conversion.save(force_insert=True)
            upload_record_create(user=owner)
            transaction.on_commit(
                lambda: conversion_enqueue(conversion_id=conversion.id, attempt=conversion.attempt, fetch=fetch)
            )
    except BrokerError as exc:
        # The row committed but the broker refused the job: undo both so nothing is left half-made.
        _discard(conversion)
        raise QueueUnavailable() from exc
    except Exception:
        _discard(conversion)
        raise
    return conversion


def _discard(conversion: Conversion) -> None:
    """Undo a half-made upload: the stored source first (storage is up), then the row if the database allows."""
    try:
        if conversion.source:
            conversion.source.delete(save=False)
    finally:
        try:
            Conversion.objects.filter(pk=conversion.pk).delete()
        except DatabaseError:
            logger.warning("conversion %s: could not remove the row (database unavailable)", conversion.pk)


def conversion_enqueue(*, conversion_id: uuid.UUID, attempt: int, fetch: bool = False) -> None:
    """Queue `convert → notify` for one attempt at a job; `fetch → convert → notify` for a URL job whose source is not
    downloaded yet (`fetch`)."""
    from notifications.tasks import notify_owner_task

    from ..tasks import convert_video_task, fetch_source_task

    job = str(conversion_id)
    steps = [convert_video_task.si(job, attempt), notify_owner_task.si(job, attempt)]
    if fetch:
        steps.insert(0, fetch_source_task.si(job, attempt))
    chain(*steps).apply_async()


def conversion_mark_failed(*, conversion_id: uuid.UUID | str, error: ServiceError, attempt: int | None = None) -> bool:
    """Fail a job that is still queued, fetching or processing, recording why; returns False if it had already left those
    states."""
    failed = conversion_attempt_rows(conversion_id=conversion_id, attempt=attempt).filter(
        status__in=Conversion.ACTIVE
    ).update(
        status=Status.FAILED, error_code=error.code, error_message=error.message, error_detail=error.detail,
        finished_at=timezone.now(),
    )
    if failed:
        logger.warning("conversion %s: failed with %s: %s", conversion_id, error.code, error.message)
        conversion_finished_observed(status=Status.FAILED, error_code=error.code)
    return bool(failed)


def conversion_cancel(*, conversion: Conversion) -> bool:
    """Cancel a queued or running job; a running ffmpeg is stopped by the worker within about a second."""
    cancelled = engine.ConversionCancelled()
    moved = Conversion.objects.filter(pk=conversion.pk, status__in=Conversion.CANCELLABLE).update(
        status=Status.CANCELLED, error_code=cancelled.code, error_message=cancelled.message, finished_at=timezone.now()
    )
    if moved:
        logger.info("conversion %s: cancelled", conversion.pk)
        conversion_finished_observed(status=Status.CANCELLED, error_code=cancelled.code)
    return bool(moved)


def conversion_retry(*, conversion: Conversion, enforce_limits: bool = False) -> bool:
    """Queue a failed or cancelled job again from the start, as a new attempt (whose owner is told again); returns
    False if it was in another state. A URL job fetches its source again (the stored copy goes); a split job's tracks
    go. `enforce_limits` (an owner's retry): the job becomes active again, so refuse it past the owner's active-jobs
    limit (RateLimited); an admin's retry is not limited. An expired job's source is gone: ConversionExpired (410)."""
    with transaction.atomic():
        if enforce_limits:
            owner_lock(user=conversion.owner)
            if Conversion.objects.filter(pk=conversion.pk, status__in=Conversion.RETRYABLE).exists():
                retry_check(user=conversion.owner)
        rows = Conversion.objects.filter(pk=conversion.pk, status__in=Conversion.RETRYABLE)
        source_url, old_source = rows.values_list("source_url", "source").first() or ("", "")
        refetch = {"source": "", "source_size": 0} if source_url else {}
        requeued = rows.update(
            status=Status.QUEUED, attempt=F("attempt") + 1, progress=0, error_code="", error_message="",
            error_detail="", started_at=None, finished_at=None, redeliveries=0, heartbeat_at=timezone.now(),
            **refetch,
        )
        if requeued:
            attempt = Conversion.objects.values_list("attempt", flat=True).get(pk=conversion.pk)
            _tracks_delete(conversion_id=conversion.pk)  # the new attempt makes its own
            if refetch and old_source:
                transaction.on_commit(lambda: _discard_source(old_source))
            transaction.on_commit(
                lambda: conversion_enqueue(conversion_id=conversion.pk, attempt=attempt, fetch=bool(source_url))
            )
        elif Conversion.objects.filter(pk=conversion.pk, status=Status.EXPIRED).exists():
            raise ConversionExpired(RETRY_EXPIRED)
    return bool(requeued)


def _discard_source(name: str) -> None:
    try:
        default_storage.delete(name)
    except STORAGE_ERRORS as exc:
        # The fetch step replaces the file under this name anyway.
        logger.warning("could not remove the stored source %s before fetching it again: %r", name, exc)


def _tracks_delete(*, conversion_id: uuid.UUID) -> None:
    """Remove a job's track rows now and their files once the transaction commits (a rollback keeps both)."""
    names = list(Track.objects.filter(conversion_id=conversion_id).values_list("mp3", flat=True))
    Track.objects.filter(conversion_id=conversion_id).delete()
    if names:
        transaction.on_commit(lambda: _delete_stored(names))


def _delete_stored(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


@transaction.atomic
def conversion_delete(*, conversion: Conversion) -> None:
    """Remove the job and its stored files: the source, the MP3 or each track's. A storage error rolls the row back,
    so nothing is orphaned."""
    track_names = list(Track.objects.filter(conversion_id=conversion.pk).values_list("mp3", flat=True))
    Conversion.objects.filter(pk=conversion.pk).delete()
    _delete_stored(track_names)
    for stored in (conversion.mp3, conversion.source):
        if stored:
            stored.storage.delete(stored.name)
