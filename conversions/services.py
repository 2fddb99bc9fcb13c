"""Writes for conversions: create, convert, fail, notify, retry, delete.

State changes are conditional updates on the row, so a redelivered task can neither repeat finished work nor move
a job backwards.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import unicodedata
import uuid
from pathlib import Path, PurePath

from celery import chain
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from . import engine
from .models import Conversion, mp3_upload_to

logger = logging.getLogger(__name__)

Status = Conversion.Status
COPY_CHUNK_BYTES = 1024 * 1024


class QueueUnavailable(Exception):
    """The job could not be handed to the broker; nothing was kept."""


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
    conversion = Conversion(
        id=uuid.uuid4(),
        owner=owner,
        original_filename=clean_filename(upload.name),
        source_size=upload.size,
        options=options.as_dict(),
    )
    conversion.source.save(conversion.original_filename, upload, save=False)
    try:
        with transaction.atomic():
            conversion.save(force_insert=True)
            transaction.on_commit(lambda: conversion_enqueue(conversion_id=conversion.id))
    except BrokerError as exc:
        # The row committed but the broker refused the job: undo both so nothing is left half-made.
        _discard(conversion)
        raise QueueUnavailable("The conversion queue is unavailable right now. Please try again shortly.") from exc
    except Exception:
        _discard(conversion)
        raise
    return conversion


def _discard(conversion: Conversion) -> None:
    Conversion.objects.filter(pk=conversion.pk).delete()
    if conversion.source:
        conversion.source.delete(save=False)


def conversion_enqueue(*, conversion_id: uuid.UUID) -> None:
    """Queue `convert → notify` for a job."""
    from .tasks import convert_video_task, notify_owner_task

    job = str(conversion_id)
    chain(convert_video_task.si(job), notify_owner_task.si(job)).apply_async()


def conversion_convert(*, conversion_id: uuid.UUID | str) -> None:
    """Convert a queued job's source to MP3. Safe to call again for the same job (a redelivered message)."""
    claimed = Conversion.objects.filter(pk=conversion_id, status__in=[Status.QUEUED, Status.PROCESSING]).update(
        status=Status.PROCESSING, started_at=timezone.now()
    )
    if not claimed:
        logger.info("conversion %s: nothing to do (finished, failed or deleted)", conversion_id)
        return
    conversion = Conversion.objects.get(pk=conversion_id)
    options = engine.OutputOptions.from_dict(conversion.options)
    with tempfile.TemporaryDirectory(prefix="mp3converter-") as workdir:
        source_path, target_path = Path(workdir) / "source", Path(workdir) / "output.mp3"
        with conversion.source.open("rb") as stored, source_path.open("wb") as local:
            shutil.copyfileobj(stored, local, COPY_CHUNK_BYTES)
        try:
            result = engine.convert(source_path, target_path, options=options)
        except engine.MediaError as exc:
            conversion_mark_failed(conversion_id=conversion.id, code=exc.code, message=exc.message, detail=exc.detail)
            return
        mp3_name = mp3_upload_to(conversion, "")
        # A crashed earlier attempt may have stored this MP3 already: replace it rather than keep a second copy.
        default_storage.delete(mp3_name)
        with target_path.open("rb") as mp3:
            mp3_name = default_storage.save(mp3_name, File(mp3, name=mp3_name))
    finished = Conversion.objects.filter(pk=conversion.id, status=Status.PROCESSING).update(
        status=Status.DONE,
        mp3=mp3_name,
        mp3_size=result.size,
        duration_seconds=round(result.duration, 3),
        finished_at=timezone.now(),
        error_code="",
        error_message="",
    )
    if not finished:
        # The job was deleted (or cancelled) while converting: keep no file nobody owns.
        default_storage.delete(mp3_name)
        return
    logger.info("conversion %s: done, %.1f s of audio, %d bytes", conversion.id, result.duration, result.size)


def conversion_mark_failed(*, conversion_id: uuid.UUID | str, code: str, message: str, detail: str = "") -> bool:
    """Fail a job that is still queued or processing; returns False if it had already left those states."""
    failed = Conversion.objects.filter(pk=conversion_id, status__in=[Status.QUEUED, Status.PROCESSING]).update(
        status=Status.FAILED, error_code=code, error_message=message, error_detail=detail, finished_at=timezone.now()
    )
    if failed:
        logger.warning("conversion %s: failed with %s: %s", conversion_id, code, message)
    return bool(failed)


def conversion_notify(*, conversion_id: uuid.UUID | str) -> None:
    """Email the owner that the job finished, once. SMTP errors propagate so the task can retry."""
    conversion = Conversion.objects.select_related("owner").filter(pk=conversion_id).first()
    if conversion is None or conversion.notified_at is not None:
        return
    if conversion.status not in (Status.DONE, Status.FAILED):
        return
    subject, body = _notification(conversion)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [conversion.owner.email])
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
    """Queue a failed job again from the start; returns False if it was not failed."""
    with transaction.atomic():
        requeued = Conversion.objects.filter(pk=conversion.pk, status=Status.FAILED).update(
            status=Status.QUEUED, error_code="", error_message="", error_detail="",
            started_at=None, finished_at=None, notified_at=None,
        )
        if requeued:
            transaction.on_commit(lambda: conversion_enqueue(conversion_id=conversion.pk))
    return bool(requeued)


def conversion_resend_notification(*, conversion: Conversion) -> None:
    """Send the finished-job email again."""
    from .tasks import notify_owner_task

    with transaction.atomic():
        Conversion.objects.filter(pk=conversion.pk).update(notified_at=None)
        transaction.on_commit(lambda: notify_owner_task.delay(str(conversion.pk)))


@transaction.atomic
def conversion_delete(*, conversion: Conversion) -> None:
    """Remove the job and both of its stored files. A storage error rolls the row back, so nothing is orphaned."""
    Conversion.objects.filter(pk=conversion.pk).delete()
    for stored in (conversion.mp3, conversion.source):
        if stored:
            stored.storage.delete(stored.name)
