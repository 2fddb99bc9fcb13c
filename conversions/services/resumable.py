"""Resumable (tus) uploads: create one, append a request's bytes to it, finish it into a conversion, terminate it,
and sweep the expired ones. The protocol itself is conversions/api/tus.py; the stores' appends are
conversions/storage/resumable.py.

- At creation the declared length is held to MAX_UPLOAD_MB and the account's gate and limits are checked (cheap);
  at completion they are checked again, by the same function a POST goes through (`conversion_admit`).
- One request writes at a time: a PATCH claims the upload (`locked_until`, renewed while it streams); a second one
  meanwhile answers 423 `upload_busy`, which tus clients retry.
- A chunk sent with a checksum is verified once it is all in; on a mismatch the store is put back as it was (460).
- When the last byte arrives the store turns the bytes into the conversion's stored source (no copy for the local
  folder), and the conversion is admitted exactly as a POST's. A refusal removes the bytes and the upload, and the
  final PATCH answers it as the POST would.
- Unfinished uploads expire after UPLOAD_EXPIRY_HOURS; the retention sweep removes them
  (`resumable_uploads_sweep`, called by conversions/services/retention.py on the fetch role, which holds the store's
  credentials).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Q
from django.utils import timezone

from mp3converter.errors import ErrorCode, InvalidRequest, ServiceError, StorageUnavailable
from mp3converter.metrics import storage_error_observed

from .. import engine
from ..filenames import source_name
from ..models import Conversion, ResumableUpload
from ..storage import STORAGE_ERRORS
from ..storage.resumable import resumable_store
from ..uploads import UploadTooLarge, max_upload_bytes
from .lifecycle import conversion_admit
from .quotas import upload_check

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# How long a PATCH holds its claim on the upload without news, and how often a streaming one renews it.
LOCK_SECONDS = 60
LOCK_RENEW_SECONDS = 20
# Expired uploads removed per sweep: a run stays short; the next one takes the rest.
SWEEP_BATCH = 200


class OffsetMismatch(ServiceError):
    code = ErrorCode.OFFSET_MISMATCH
    message = "Upload-Offset does not match the bytes received so far: ask with HEAD and resume from there."


class UploadBusy(ServiceError):
    code = ErrorCode.UPLOAD_BUSY
    message = "Another request is writing to this upload right now. Try again in a moment."
    retry_after = 5


class UploadGone(ServiceError):
    code = ErrorCode.UPLOAD_GONE
    message = "This upload has expired: its bytes were removed. Start a new upload."


class ChunkTooLarge(ServiceError):
    code = ErrorCode.CHUNK_TOO_LARGE
    message = "This request carries more bytes than an upload request may."


class ChecksumMismatch(ServiceError):
    code = ErrorCode.CHECKSUM_MISMATCH
    message = "The chunk's checksum does not match its bytes, so it was discarded. Send it again."


def upload_expires_at(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(hours=settings.UPLOAD_EXPIRY_HOURS)


def max_chunk_bytes() -> int:
    return settings.TUS_MAX_CHUNK_MB * MB


def resumable_upload_create(
    *, owner, length: int, filename: str, options: engine.OutputOptions, webhook_url: str = ""
) -> ResumableUpload:
    """Start an upload of `length` bytes that will become a conversion of `filename` with `options` (and its own
    webhook, `webhook_url`)."""
    if length < 1:
        raise InvalidRequest("The file is empty: Upload-Length must be at least 1.")
    if length > max_upload_bytes():
        raise UploadTooLarge(max_upload_bytes())
    upload_check(user=owner, size=length)
    upload = ResumableUpload(
        owner=owner, length=length, original_filename=filename, options=options.as_dict(),
        webhook_url=webhook_url, expires_at=upload_expires_at(),
    )
    store = resumable_store()
    try:
        upload.store_state = store.begin(upload_id=upload.id, name=source_name(upload.conversion_id))
    except STORAGE_ERRORS as exc:
        logger.warning("resumable upload %s: the store refused to start it: %r", upload.id, exc)
        storage_error_observed()
        raise StorageUnavailable() from exc
    try:
        upload.save(force_insert=True)
    except Exception:
        store.discard(state=upload.store_state)
        raise
    return upload


def resumable_upload_append(
    *,
    upload: ResumableUpload,
    offset: int,
    chunks: Iterable[bytes],
    declared: int,
    checksum: tuple[str, bytes] | None = None,
) -> Conversion | None:
    """Append one request's body (`declared` bytes, read as `chunks`) at `offset`; `checksum` is the body's digest
    and its algorithm (a hashlib name) if the client sent one. Returns the conversion when this was the last byte (and updates `upload` in place)."""
    if upload.is_complete:
        raise UploadGone("This upload is finished; its conversion is in the Conversion-Location header of a HEAD.")
    now = timezone.now()
    if upload.expires_at <= now:
        raise UploadGone()
    if offset != upload.offset:
        raise OffsetMismatch(
            f"Upload-Offset is {offset}, but this upload has {upload.offset} bytes: resume from {upload.offset}."
        )
    if declared > max_chunk_bytes():
        raise ChunkTooLarge(f"One request may carry at most {settings.TUS_MAX_CHUNK_MB} MB; send smaller chunks.")
    if offset + declared > upload.length:
        raise ChunkTooLarge(
            f"This request would take the upload past its declared length of {upload.length} bytes."
        )
    _claim(upload, offset=offset, now=now)
    try:
        # Hashed only when the client sent a checksum: most requests need no CPU spent on it.
        digest = hashlib.new(checksum[0]) if checksum else None
        store = resumable_store()
        try:
            appended = store.append(
                state=upload.store_state, offset=offset, length=upload.length,
                chunks=_guarded(chunks, upload=upload, limit=declared, digest=digest),
            )
        except STORAGE_ERRORS as exc:
            logger.warning("resumable upload %s: the store refused a chunk: %r", upload.id, exc)
            storage_error_observed()
            raise StorageUnavailable("File storage is unavailable right now. Resume the upload shortly.") from exc
        if checksum is not None and digest.digest() != checksum[1]:  # type: ignore[union-attr]
            appended.undo()
            raise ChecksumMismatch()
        upload.offset = offset + appended.size
        upload.store_state = appended.state
        # Still claimed: the last chunk goes on to become a conversion under the same claim.
        ResumableUpload.objects.filter(pk=upload.pk, offset=offset).update(
            offset=upload.offset, store_state=upload.store_state
        )
        appended.settle()
        if upload.offset == upload.length:
            return _finish(upload)
    finally:
        ResumableUpload.objects.filter(pk=upload.pk).update(locked_until=None)
    return None


def _claim(upload: ResumableUpload, *, offset: int, now: datetime) -> None:
    claimed = ResumableUpload.objects.filter(
        Q(locked_until__isnull=True) | Q(locked_until__lt=now), pk=upload.pk, offset=offset, completed_at__isnull=True
    ).update(locked_until=now + timedelta(seconds=LOCK_SECONDS))
    if claimed:
        return
    current = ResumableUpload.objects.filter(pk=upload.pk).values_list("offset", flat=True).first()
    if current is None:
        raise UploadGone("This upload was terminated or has expired. Start a new upload.")
    if current != offset:
        raise OffsetMismatch(f"Upload-Offset is {offset}, but this upload has {current} bytes: resume from {current}.")
    raise UploadBusy()


def _guarded(chunks: Iterable[bytes], *, upload: ResumableUpload, limit: int, digest) -> Iterator[bytes]:
    """The request's chunks, hashed, held to `limit` bytes, renewing the upload's claim while they stream."""
    received, renewed = 0, time.monotonic()
    for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise ChunkTooLarge("The request's body is longer than its Content-Length.")
        if digest is not None:
            digest.update(chunk)
        yield chunk
        if time.monotonic() - renewed > LOCK_RENEW_SECONDS:
            renewed = time.monotonic()
            ResumableUpload.objects.filter(pk=upload.pk).update(
                locked_until=timezone.now() + timedelta(seconds=LOCK_SECONDS)
            )


def _finish(upload: ResumableUpload) -> Conversion:
    """The last byte is in: make the bytes the conversion's stored source and admit it as a POST would."""
    store = resumable_store()
    name = source_name(upload.conversion_id)
    try:
        try:
            store.complete(state=upload.store_state, length=upload.length, name=name)
        except STORAGE_ERRORS as exc:
            logger.warning("resumable upload %s: the store could not assemble it: %r", upload.id, exc)
            storage_error_observed()
            raise StorageUnavailable() from exc

        def store_source(conversion: Conversion) -> None:
            conversion.source = name  # already there: the store wrote it under this name

        with store.local_file(name=name) as path:
            conversion = conversion_admit(
                owner=upload.owner, conversion_id=upload.conversion_id, path=path, size=upload.length,
                filename=upload.original_filename, options=engine.OutputOptions.from_dict(upload.options),
                store_source=store_source, webhook_url=upload.webhook_url,
            )
    except BaseException:
        # Refused (not media, no audio, too long, a limit) or the store or queue failed: nothing is kept.
        with suppress(*STORAGE_ERRORS):
            store.discard(state=upload.store_state)
        with suppress(*STORAGE_ERRORS):
            default_storage.delete(name)
        ResumableUpload.objects.filter(pk=upload.pk).delete()
        raise
    upload.completed_at = timezone.now()
    ResumableUpload.objects.filter(pk=upload.pk).update(completed_at=upload.completed_at)
    logger.info("resumable upload %s: complete, conversion %s queued", upload.id, conversion.pk)
    return conversion


def resumable_upload_delete(*, upload: ResumableUpload) -> None:
    """Terminate an upload: its bytes go (a finished upload's conversion stays), then its row."""
    if not upload.is_complete:
        try:
            resumable_store().discard(state=upload.store_state)
        except STORAGE_ERRORS as exc:
            storage_error_observed()
            raise StorageUnavailable("File storage is unavailable right now. Try again shortly.") from exc
    ResumableUpload.objects.filter(pk=upload.pk).delete()


def resumable_uploads_sweep(*, now: datetime | None = None) -> int:
    """Remove expired uploads and their bytes; returns how many. A finished upload's conversion stays."""
    now = now or timezone.now()
    store = resumable_store()
    expired = list(ResumableUpload.objects.filter(expires_at__lte=now).order_by("expires_at")[:SWEEP_BATCH])
    for upload in expired:
        if not upload.is_complete:
            store.discard(state=upload.store_state)
            if not Conversion.objects.filter(pk=upload.conversion_id).exists():
                # A process that died between assembling the file and admitting it left it under the source's name.
                default_storage.delete(source_name(upload.conversion_id))
        ResumableUpload.objects.filter(pk=upload.pk).delete()
    if expired:
        logger.info("removed %d expired resumable upload(s)", len(expired))
    return len(expired)
