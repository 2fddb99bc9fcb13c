"""The fetch step of a URL job, as the fetch worker runs it: claim the job, download its source through the outbound
guard (mp3converter/outbound.py), probe it like an upload, store it, and hand the job on to the convert step.

The download streams to a temporary file, counting bytes: it stops at once past MAX_UPLOAD_MB (`source_too_large`).
Nothing is stored until the whole file is downloaded and probed, so a fetch that fails part-way leaves no stored file.
Safe to run twice for one message: every step is fenced by the job's state and attempt.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import urllib3
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone
from urllib3.exceptions import HTTPError

from mp3converter import outbound
from mp3converter.errors import ErrorCode, ServiceError

from .. import engine
from ..filenames import clean_filename, source_name
from ..models import Conversion
from ..selectors import conversion_attempt_rows
from ..storage import store_replacing
from ..workdirs import conversion_workdir, workdirs_sweep
from .lifecycle import conversion_mark_failed
from .processing import Heartbeat, too_many_redeliveries
from .quotas import storage_check

logger = logging.getLogger(__name__)

Status = Conversion.Status
CHUNK_BYTES = 64 * 1024
MB = 1024 * 1024


class SourceTooLarge(ServiceError):
    code = ErrorCode.SOURCE_TOO_LARGE
    message = "The file at this URL is larger than the upload limit."


def url_filename(url: str) -> str:
    """A display name for a URL's file: the last part of its path, else its host."""
    parts = urlsplit(url)
    return clean_filename(unquote(parts.path.rstrip("/").rsplit("/", 1)[-1]) or parts.hostname or "download")


def fetch_timeout() -> urllib3.Timeout:
    return urllib3.Timeout(connect=settings.FETCH_CONNECT_TIMEOUT, read=settings.FETCH_READ_TIMEOUT)


class FetchProgress:
    """Writes the share of Content-Length received at most once a second, with the heartbeat, and stops the download
    once the job is cancelled, retried, requeued or deleted."""

    def __init__(self, conversion_id: uuid.UUID, attempt: int, total: int | None, *, interval: float = 1.0):
        self.rows = conversion_attempt_rows(conversion_id=conversion_id, attempt=attempt).filter(status=Status.FETCHING)
        self.total, self.interval = total, interval
        self.last_write = time.monotonic()

    def __call__(self, received: int) -> None:
        now = time.monotonic()
        if now - self.last_write < self.interval:
            return
        self.last_write = now
        changes = {"heartbeat_at": timezone.now()}
        if self.total:
            changes["progress"] = min(99, received * 100 // self.total)
        if not self.rows.update(**changes):
            raise engine.ConversionCancelled()


@dataclass(frozen=True)
class Downloaded:
    size: int
    url: str  # where it came from after redirects


def download(url: str, path: Path, *, max_bytes: int, on_progress=None, resolve=outbound.system_resolve) -> Downloaded:
    """Download `url` to `path` through the outbound guard, at most `max_bytes` (SourceTooLarge past it)."""
    timeout = fetch_timeout()
    response, target = outbound.open_url(url, timeout=timeout, resolve=resolve)
    try:
        if response.status != 200:
            raise outbound.status_failure(target.host, response.status, response.reason or "")
        declared = response.headers.get("Content-Length")
        total = int(declared) if declared and declared.isdigit() else None
        if total is not None and total > max_bytes:
            raise _too_large(total)
        progress = on_progress(total) if on_progress else None
        received = 0
        with path.open("wb") as local:
            try:
                for chunk in response.stream(CHUNK_BYTES):
                    received += len(chunk)
                    if received > max_bytes:
                        raise _too_large(None)
                    local.write(chunk)
                    if progress is not None:
                        progress(received)
            except HTTPError as exc:
                raise outbound.failure(exc, target.host, timeout) from exc
        if total is not None and received < total:
            raise outbound.OutboundFailed(f"The server at {target.host} ended the file early ({received} of {total} bytes).")
        if not received:
            raise outbound.OutboundFailed(f"The server at {target.host} answered with an empty file.")
        return Downloaded(size=received, url=target.url)
    finally:
        response.close()


def _too_large(size: int | None) -> SourceTooLarge:
    said = f" ({size / MB:.1f} MB)" if size is not None else ""
    return SourceTooLarge(f"The file at this URL{said} is larger than the upload limit of {settings.MAX_UPLOAD_MB} MB.")


def conversion_fetch(
    *, conversion_id: uuid.UUID | str, attempt: int | None = None, redelivered: bool = False, retrying: bool = False,
    resolve=outbound.system_resolve,
) -> None:
    """Download a queued URL job's source, check it as an upload is checked, store it and queue the job for its
    conversion. A job that cannot work fails with a code (fetch_failed, source_too_large, forbidden_address, or the
    probe's). Storage and database errors propagate, for the task to retry."""
    resumable = [Status.QUEUED, Status.FETCHING] if redelivered or retrying else [Status.QUEUED]
    open_rows = (
        conversion_attempt_rows(conversion_id=conversion_id, attempt=attempt)
        .filter(status__in=resumable, source="")
        .exclude(source_url="")
    )
    if redelivered and too_many_redeliveries(open_rows, conversion_id, attempt):
        return
    now = timezone.now()
    if not open_rows.update(status=Status.FETCHING, started_at=now, heartbeat_at=now, progress=0):
        logger.info("conversion %s: nothing to fetch (fetched, finished, cancelled, retried or deleted)", conversion_id)
        return
    conversion = Conversion.objects.select_related("owner").get(pk=conversion_id)
    workdirs_sweep()  # folders of fetches killed on this machine since the last sweep
    with Heartbeat(conversion.id, conversion.attempt, status=Status.FETCHING), conversion_workdir() as workdir:
        path = Path(workdir) / "source"
        try:
            downloaded = download(
                conversion.source_url, path, max_bytes=settings.MAX_UPLOAD_MB * MB, resolve=resolve,
                on_progress=lambda total: FetchProgress(conversion.id, conversion.attempt, total),
            )
            _check_source(conversion, path, downloaded.size)
        except ServiceError as exc:
            conversion_mark_failed(conversion_id=conversion.id, attempt=conversion.attempt, error=exc)
            return
        name = store_replacing(path, source_name(conversion.id))
    fetched = conversion_attempt_rows(conversion_id=conversion.id, attempt=conversion.attempt).filter(
        status=Status.FETCHING
    ).update(status=Status.QUEUED, source=name, source_size=downloaded.size, progress=0, heartbeat_at=timezone.now())
    if not fetched:
        # Cancelled or deleted while storing: keep no file nobody owns.
        default_storage.delete(name)
        return
    logger.info("conversion %s: fetched %d bytes from %s", conversion.id, downloaded.size, urlsplit(downloaded.url).hostname)


def _check_source(conversion: Conversion, path: Path, size: int) -> None:
    """The checks an upload gets at POST, now that the file is here: the probe, the options, the storage limit."""
    info = engine.probe(str(path), timeout=settings.PROBE_TIMEOUT, max_duration=settings.MAX_DURATION_MINUTES * 60)
    if not info.has_audio:
        raise engine.NoAudioStream()
    engine.OutputOptions.from_dict(conversion.options).check_against(info)
    storage_check(user=conversion.owner, size=size)


