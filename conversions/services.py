"""Writes for conversions: create, convert, fail, notify, retry, delete.

State changes are conditional updates on the row, so a redelivered task can neither repeat finished work nor move
a job backwards.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import unicodedata
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path, PurePath

from celery import chain
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.core.mail import send_mail
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from . import engine
from .models import Conversion, mp3_upload_to
from .storage import STORAGE_ERRORS

logger = logging.getLogger(__name__)

Status = Conversion.Status
COPY_CHUNK_BYTES = 1024 * 1024
NOTIFY_CLAIM_TIMEOUT = timedelta(minutes=5)


WORKDIR_PREFIX = "mp3converter-"
_WORKDIR_RE = re.compile(rf"^{WORKDIR_PREFIX}(\d+)-")


def _process_alive(pid: int) -> bool:
    """A killed process can linger as a zombie until reaped: that counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def workdirs_sweep(*, directory: str | None = None) -> list[str]:
    """Remove the temporary directories of conversions whose process is gone (killed, say); returns their names.

    Every conversion works in `mp3converter-<pid>-*` under the temp dir and removes it when done; only a process
    that died mid-conversion leaves one behind. A process whose pid is alive keeps its directory.
    """
    directory = directory or tempfile.gettempdir()
    removed = []
    for entry in os.scandir(directory):
        match = _WORKDIR_RE.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False):
            continue
        if _process_alive(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.name)
    if removed:
        logger.warning("removed %d temporary folder(s) left by killed conversions: %s", len(removed), removed)
    return removed


class QueueUnavailable(Exception):
    """The job could not be handed to the broker; nothing was kept."""


class StorageUnavailable(Exception):
    """The upload could not be stored (the file store is down, full or refusing); nothing was kept."""


def clean_filename(name: str) -> str:
    """A display name that is safe to store and echo back: no directories, no control characters, at most 255."""
    name = unicodedata.normalize("NFC", name or "")
    name = PurePath(name.replace("\\", "/")).name
    name = re.sub(r"[\x00-\x1f\x7f]", " ", name).strip()
    if name in ("", ".", ".."):
        name = "upload"
    if len(name) > 255:
        suffix = PurePath(name).suffix[:16]
        name = name[: 255 - len(suffix)] + suffix
    return name


def conversion_create(*, owner, upload: UploadedFile, options: engine.OutputOptions) -> Conversion:
    """Probe an upload, store it and queue its conversion. Raises engine.MediaError for input that cannot work."""
    info = engine.probe(upload.temporary_file_path(), timeout=settings.PROBE_TIMEOUT)
    if not info.has_audio:
        raise engine.NoAudioStream()
    options.check_against(info)
    original_filename = clean_filename(upload.name)
    if options.title is None:
        options = replace(options, title=PurePath(original_filename).stem[: engine.TAG_MAX_LENGTH] or None)
    conversion = Conversion(
        id=uuid.uuid4(),
        owner=owner,
        original_filename=original_filename,
        source_size=upload.size,
        options=options.as_dict(),
    )
    try:
        conversion.source.save(conversion.original_filename, upload, save=False)
    except STORAGE_ERRORS as exc:
        # The storages remove what they wrote of a failed save (GridFS and S3 abort, a folder's partial file goes).
        logger.warning("upload %s: could not store the source: %r", conversion.pk, exc)
        raise StorageUnavailable("File storage is unavailable right now. Nothing was stored; please try again shortly.") from exc
    try:
        with transaction.atomic():
            conversion.save(force_insert=True)
            transaction.on_commit(lambda: conversion_enqueue(conversion_id=conversion.id, attempt=conversion.attempt))
    except BrokerError as exc:
        # The row committed but the broker refused the job: undo both so nothing is left half-made.
        _discard(conversion)
        raise QueueUnavailable("The conversion queue is unavailable right now. Please try again shortly.") from exc
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


def conversion_enqueue(*, conversion_id: uuid.UUID, attempt: int) -> None:
    """Queue `convert → notify` for one attempt at a job."""
    from .tasks import convert_video_task, notify_owner_task

    job = str(conversion_id)
    chain(convert_video_task.si(job, attempt), notify_owner_task.si(job, attempt)).apply_async()


def _this_attempt(conversion_id: uuid.UUID | str, attempt: int | None):
    """The job's row, narrowed to one attempt: messages of an earlier attempt (before a retry) touch nothing."""
    rows = Conversion.objects.filter(pk=conversion_id)
    return rows if attempt is None else rows.filter(attempt=attempt)


class ProgressReporter:
    """Writes the job's progress at most once a second, and stops the conversion once the job is cancelled."""

    def __init__(self, conversion_id: uuid.UUID, attempt: int, *, interval: float = 1.0):
        self.rows = _this_attempt(conversion_id, attempt)
        self.interval = interval
        self.last_write = time.monotonic()

    def __call__(self, percent: float) -> None:
        now = time.monotonic()
        if now - self.last_write < self.interval:
            return
        self.last_write = now
        if not self.rows.filter(status=Status.PROCESSING).update(progress=int(percent)):
            raise engine.ConversionCancelled()  # cancelled, retried or deleted meanwhile


def conversion_convert(
    *, conversion_id: uuid.UUID | str, attempt: int | None = None, redelivered: bool = False
) -> None:
    """Convert a queued job's source to MP3. Safe to call again for the same job (a redelivered message)."""
    open_rows = _this_attempt(conversion_id, attempt).filter(status__in=[Status.QUEUED, Status.PROCESSING])
    if redelivered and _too_many_redeliveries(open_rows, conversion_id, attempt):
        return
    claimed = open_rows.update(status=Status.PROCESSING, started_at=timezone.now(), progress=0)
    if not claimed:
        logger.info("conversion %s: nothing to do (finished, cancelled, retried or deleted)", conversion_id)
        return
    conversion = Conversion.objects.get(pk=conversion_id)
    workdirs_sweep()  # folders of conversions killed on this machine since the last sweep
    if not conversion.source or not conversion.source.storage.exists(conversion.source.name):
        conversion_mark_failed(
            conversion_id=conversion.id,
            attempt=conversion.attempt,
            code=Conversion.ErrorCode.INTERNAL_ERROR,
            message="The uploaded file is missing from storage. Please upload it again.",
        )
        return
    options = engine.OutputOptions.from_dict(conversion.options)
    with tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-") as workdir:
        source_path, target_path = Path(workdir) / "source", Path(workdir) / "output.mp3"
        with conversion.source.open("rb") as stored, source_path.open("wb") as local:
            shutil.copyfileobj(stored, local, COPY_CHUNK_BYTES)
        try:
            result = engine.convert(
                source_path, target_path, options=options,
                on_progress=ProgressReporter(conversion.id, conversion.attempt),
            )
        except engine.MediaError as exc:
            conversion_mark_failed(
                conversion_id=conversion.id, attempt=conversion.attempt,
                code=exc.code, message=exc.message, detail=exc.detail,
            )
            return
        mp3_name = mp3_upload_to(conversion, "")
        # A crashed earlier attempt may have stored this MP3 already: replace it rather than keep a second copy.
        default_storage.delete(mp3_name)
        try:
            with target_path.open("rb") as mp3:
                mp3_name = default_storage.save(mp3_name, File(mp3, name=mp3_name))
        except Exception:
            default_storage.delete(mp3_name)  # a write that failed part-way leaves no partial file behind
            raise
    finished = _this_attempt(conversion.id, conversion.attempt).filter(status=Status.PROCESSING).update(
        status=Status.DONE,
        progress=100,
        mp3=mp3_name,
        mp3_size=result.size,
        duration_seconds=round(result.duration, 3),
        finished_at=timezone.now(),
        error_code="",
        error_message="",
        error_detail="",
    )
    if not finished:
        # The job was deleted or cancelled while converting: keep no file nobody owns.
        default_storage.delete(mp3_name)
        return
    logger.info(
        "conversion %s: done, %.1f s of audio, %d bytes%s",
        conversion.id, result.duration, result.size, " (stream copied)" if result.copied else "",
    )


def _too_many_redeliveries(open_rows, conversion_id, attempt) -> bool:
    """Count a redelivery; fail the job once they pass the limit (its source kills the worker every time)."""
    open_rows.update(redeliveries=F("redeliveries") + 1)
    redeliveries = open_rows.values_list("redeliveries", flat=True).first()
    if redeliveries is None or redeliveries <= settings.CONVERSION_MAX_REDELIVERIES:
        return False
    conversion_mark_failed(
        conversion_id=conversion_id,
        attempt=attempt,
        code=Conversion.ErrorCode.INTERNAL_ERROR,
        message="Converting this file stopped the worker every time it was tried, so we gave up on it.",
        detail=f"redelivered {redeliveries} times",
    )
    return True


def conversion_mark_failed(
    *, conversion_id: uuid.UUID | str, code: str, message: str, detail: str = "", attempt: int | None = None
) -> bool:
    """Fail a job that is still queued or processing; returns False if it had already left those states."""
    failed = _this_attempt(conversion_id, attempt).filter(status__in=[Status.QUEUED, Status.PROCESSING]).update(
        status=Status.FAILED, error_code=code, error_message=message, error_detail=detail, finished_at=timezone.now()
    )
    if failed:
        logger.warning("conversion %s: failed with %s: %s", conversion_id, code, message)
    return bool(failed)


def conversion_cancel(*, conversion: Conversion) -> bool:
    """Cancel a queued or running job; a running ffmpeg is stopped by the worker within about a second."""
    cancelled = Conversion.objects.filter(pk=conversion.pk, status__in=Conversion.CANCELLABLE).update(
        status=Status.CANCELLED,
        error_code=Conversion.ErrorCode.CANCELLED,
        error_message=engine.ConversionCancelled.message,
        finished_at=timezone.now(),
    )
    if cancelled:
        logger.info("conversion %s: cancelled", conversion.pk)
    return bool(cancelled)


def conversion_notify(*, conversion_id: uuid.UUID | str, attempt: int | None = None) -> None:
    """Email the owner that the job finished, once. SMTP errors propagate so the task can retry."""
    conversion = _this_attempt(conversion_id, attempt).select_related("owner").first()
    if conversion is None or conversion.notified_at is not None:
        return
    if conversion.status not in (Status.DONE, Status.FAILED):
        return
    started = timezone.now()
    # Claim the sending, so a second delivery of this task cannot send too; a claim left by a notify worker that
    # died mid-send expires, and the email goes out then.
    claimed = _this_attempt(conversion.id, attempt).filter(notified_at__isnull=True).filter(
        Q(notify_started_at__isnull=True) | Q(notify_started_at__lt=started - NOTIFY_CLAIM_TIMEOUT)
    ).update(notify_started_at=started)
    if not claimed:
        return
    subject, body = _notification(conversion)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [conversion.owner.email])
    except Exception:
        Conversion.objects.filter(pk=conversion.id, notify_started_at=started).update(notify_started_at=None)
        raise
    Conversion.objects.filter(pk=conversion.id, notified_at__isnull=True).update(notified_at=timezone.now())
    logger.info("conversion %s: owner notified", conversion.id)


def _notification(conversion: Conversion) -> tuple[str, str]:
    base = settings.PUBLIC_BASE_URL
    if conversion.status == Status.DONE:
        body = (
            f"mp3 file_id: {conversion.id} is now ready!\n\n"
            f"Your MP3 of {conversion.original_filename} is ready to download:\n"
            f"{base}/api/conversions/{conversion.id}/download/\n\n"
            f"Classic API: GET {base}/download?fid={conversion.id} with your token.\n"
        )
        return "MP3 Download", body
    body = (
        f"We could not convert {conversion.original_filename} to MP3.\n\n"
        f"Reason: {conversion.error_message}\n\nJob id: {conversion.id}\n"
    )
    return "MP3 conversion failed", body


def conversion_retry(*, conversion: Conversion) -> bool:
    """Queue a failed or cancelled job again from the start; returns False if it was in another state."""
    with transaction.atomic():
        requeued = Conversion.objects.filter(pk=conversion.pk, status__in=Conversion.RETRYABLE).update(
            status=Status.QUEUED, attempt=F("attempt") + 1, progress=0, error_code="", error_message="",
            error_detail="", started_at=None, finished_at=None, notified_at=None, notify_started_at=None,
            redeliveries=0,
        )
        if requeued:
            attempt = Conversion.objects.values_list("attempt", flat=True).get(pk=conversion.pk)
            transaction.on_commit(lambda: conversion_enqueue(conversion_id=conversion.pk, attempt=attempt))
    return bool(requeued)


def conversion_resend_notification(*, conversion: Conversion) -> None:
    """Send the finished-job email again."""
    from .tasks import notify_owner_task

    with transaction.atomic():
        Conversion.objects.filter(pk=conversion.pk).update(notified_at=None, notify_started_at=None)
        transaction.on_commit(lambda: notify_owner_task.delay(str(conversion.pk)))


@transaction.atomic
def conversion_delete(*, conversion: Conversion) -> None:
    """Remove the job and both of its stored files. A storage error rolls the row back, so nothing is orphaned."""
    Conversion.objects.filter(pk=conversion.pk).delete()
    for stored in (conversion.mp3, conversion.source):
        if stored:
            stored.storage.delete(stored.name)
