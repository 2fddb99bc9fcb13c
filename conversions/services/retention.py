"""Retention: how long the service keeps what it stores, and the sweep that removes the rest.

- A job's uploaded source is removed SOURCE_RETENTION_HOURS after the job ended. A done job stays done: its MP3 is
  what it is for. A failed or cancelled job can be retried until then; then it expires, as nothing is left to convert.
- A done job's MP3 (a split job's tracks) is removed OUTPUT_RETENTION_DAYS after the job ended, and the job expires;
  0 keeps MP3s for as long as their job.
- An expired job keeps its row (status `expired`, its name, sizes, options and any error) and no file: its downloads
  and links answer 410 `conversion_expired`, and it cannot be retried.
- A stored file no row needs (left by a process that died between storing it and writing its row, or by a removal that
  failed) is removed once it is ORPHAN_GRACE_HOURS old, and so are unfinished uploads' bytes no resumable upload
  holds: `stored_orphans_remove`.

Safe with two sweeps at once, and with a retry racing a sweep. A row moves by a conditional UPDATE on the row as it
was read (status, attempt and stored names), before any of its files is removed; only the sweep whose UPDATE moved
the row removes them. A retry that got there first keeps the source (the row no longer matches), and a retry that
comes second finds the job expired. A file whose removal fails belongs to no row any more: a later orphan scan
removes it. On top of that, one sweep runs at a time (a lease in the cache, which every process shares), so two
sweeps never scan the store for orphans at once.

The workers' reconciler timer publishes a sweep (`sweep_retention_task`, on the maintenance queue, which the fetch
role consumes) when none ran in the last RETENTION_SWEEP_MINUTES (mp3converter/celery.py); `manage.py
sweep_retention` runs one by hand, where the file store's settings are.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mp3converter.joblog import job_context

from ..models import Conversion, ResumableUpload, Track
from ..storage import STORAGE_ERRORS
from ..storage.inventory import StoredFile, Unfinished, store_inventory
from .resumable import SWEEP_BATCH, resumable_uploads_sweep

logger = logging.getLogger(__name__)

Status = Conversion.Status
# Rows moved, or stored names looked up, per query: each query stays short.
BATCH = 500
# One sweep at a time: held for LEASE_SECONDS, renewed after every batch; a sweep that died frees it by then.
LEASE_KEY = "conversions:retention:lease"
LEASE_SECONDS = 15 * 60
# Set when a sweep of the workers' timer ends, for RETENTION_SWEEP_MINUTES: none is due until it goes.
LAST_SWEEP_KEY = "conversions:retention:last"
# Set when a timer publishes a sweep, until it ran (or LEASE_SECONDS, should its message be lost): one at a time.
QUEUED_KEY = "conversions:retention:queued"
# The conversion (or resumable upload) a stored name belongs to: `sources/<id>`, `mp3/<id>-<attempt>.mp3`,
# `tracks/<id>-<attempt>-<n>.mp3`, `uploads/<upload id>.part`, and a store's variants of them (an S3 upload's
# `sources/<id>.tail-<offset>`, a taken name's `sources/<id>_AbC12`).
OWNER_ID = re.compile(r"^[a-z0-9]+/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


@dataclass
class Swept:
    """What one sweep removed."""

    sources: list[uuid.UUID] = field(default_factory=list)  # done jobs whose source was removed (still done)
    expired: list[uuid.UUID] = field(default_factory=list)  # jobs that expired: every file of theirs removed
    files: list[str] = field(default_factory=list)  # the stored names removed for those jobs
    orphans: list[str] = field(default_factory=list)  # stored files and unfinished uploads no row needed
    uploads: int = 0  # resumable uploads that expired unfinished (UPLOAD_EXPIRY_HOURS), removed with their bytes
    busy: bool = False  # another sweep was running: this one did nothing

    def __bool__(self) -> bool:
        return bool(self.sources or self.expired or self.orphans or self.uploads)


def retention_sweep(*, now: datetime | None = None, scheduled: bool = False) -> Swept:
    """Apply the retention rules as of `now` (default: the present), if no other sweep is running. `scheduled`: the
    workers' timer asked for it, so it does nothing if one ran in the last RETENTION_SWEEP_MINUTES, and is recorded."""
    swept = Swept()
    if scheduled and cache.get(LAST_SWEEP_KEY) is not None:
        return swept  # another timer's sweep ran since this one was published
    with _lease() as renew:
        if renew is None:
            swept.busy = True
            return swept
        if scheduled and cache.get(LAST_SWEEP_KEY) is not None:
            return swept  # ...and ended just now
        now = now or timezone.now()
        conversions_expire(now=now, swept=swept, renew=renew)
        swept.uploads = _uploads_expire(now=now, renew=renew)
        stored_orphans_remove(now=now, swept=swept, renew=renew)
        if scheduled:
            cache.set(LAST_SWEEP_KEY, now.isoformat(), timeout=settings.RETENTION_SWEEP_MINUTES * 60)
            cache.delete(QUEUED_KEY)
    if swept:
        logger.info(
            "retention sweep: %d source(s) removed, %d job(s) expired, %d file(s) removed, %d orphan(s) removed, "
            "%d expired upload(s) removed",
            len(swept.sources), len(swept.expired), len(swept.files), len(swept.orphans), swept.uploads,
        )
    return swept


def _uploads_expire(*, now: datetime, renew: Callable[[], None]) -> int:
    """Resumable uploads that expired unfinished, with their bytes (conversions/services/resumable.py), a batch at a
    time. Here rather than in the reconciler's run: this sweep runs on the fetch role, which holds the file store's
    credentials."""
    removed = 0
    while True:
        try:
            batch = resumable_uploads_sweep(now=now)
        except STORAGE_ERRORS:
            logger.exception("retention sweep: the store failed while removing expired uploads; the next sweep will")
            return removed
        removed += batch
        if batch < SWEEP_BATCH:
            return removed
        renew()


def retention_sweep_due() -> bool:
    """Whether the workers' timer should publish a sweep now: none ran in the last RETENTION_SWEEP_MINUTES, none is
    running and none is waiting in the queue. True for one caller at a time; should two timers still publish one
    each, the second sweep does nothing."""
    if cache.get(LAST_SWEEP_KEY) is not None or cache.get(LEASE_KEY) is not None:
        return False
    return cache.add(QUEUED_KEY, timezone.now().isoformat(), timeout=LEASE_SECONDS)


@contextmanager
def _lease() -> Iterator[Callable[[], None] | None]:
    """The sweep's lease: yields a function that renews it, or None when another sweep holds it."""
    token = uuid.uuid4().hex
    if not cache.add(LEASE_KEY, token, timeout=LEASE_SECONDS):
        yield None
        return
    try:
        yield lambda: cache.touch(LEASE_KEY, timeout=LEASE_SECONDS)
    finally:
        if cache.get(LEASE_KEY) == token:  # never another sweep's, should this one have outlived its lease
            cache.delete(LEASE_KEY)


def _nothing() -> None:
    return None


# --- Jobs --------------------------------------------------------------------------------------------------------
def conversions_expire(*, now: datetime, swept: Swept | None = None, renew: Callable[[], None] = _nothing) -> Swept:
    """Remove the sources and MP3s that are due as of `now` (see the module's docstring). Runs outside a transaction:
    each row's move commits before its files go."""
    swept = swept if swept is not None else Swept()
    source_cutoff = now - timedelta(hours=settings.SOURCE_RETENTION_HOURS)
    fields = ("id", "status", "attempt", "source", "mp3")
    # A failed or cancelled job whose source is due has nothing left to retry: it expires.
    unretryable = Conversion.objects.filter(status__in=Conversion.RETRYABLE, finished_at__lt=source_cutoff)
    for job in _batches(unretryable.values(*fields), renew):
        _expire(job, swept)
    # A done job's source is due: it goes, the job stays done.
    sources = Conversion.objects.filter(status=Status.DONE, finished_at__lt=source_cutoff).exclude(source="")
    for job in _batches(sources.values(*fields), renew):
        _remove_source(job, swept)
    if settings.OUTPUT_RETENTION_DAYS:
        output_cutoff = now - timedelta(days=settings.OUTPUT_RETENTION_DAYS)
        outputs = Conversion.objects.filter(status=Status.DONE, finished_at__lt=output_cutoff)
        for job in _batches(outputs.values(*fields), renew):
            _expire(job, swept)
    return swept


def _batches(rows, renew: Callable[[], None]) -> Iterator[dict]:
    """The rows, a batch at a time in the order of their keys, each read once (one another sweep moved first is
    passed over, not read again)."""
    last = None
    while batch := list((rows if last is None else rows.filter(pk__gt=last)).order_by("pk")[:BATCH]):
        yield from batch
        last = batch[-1]["id"]
        renew()


def _as_read(job: dict) -> Q:
    """The row still as the sweep read it: nobody retried, finished again, deleted or expired it meanwhile."""
    return Q(pk=job["id"], status=job["status"], attempt=job["attempt"], source=job["source"], mp3=job["mp3"])


def _remove_source(job: dict, swept: Swept) -> None:
    with job_context(job["id"]):
        if not Conversion.objects.filter(_as_read(job)).update(source=""):
            return
        logger.info("conversion %s: source removed (SOURCE_RETENTION_HOURS)", job["id"])
        swept.sources.append(job["id"])
        _remove_files([job["source"]], swept)


def _expire(job: dict, swept: Swept) -> None:
    """The job expires: the row first (status, no stored names, no tracks, in one transaction), then its files."""
    with job_context(job["id"]), transaction.atomic():
        if not Conversion.objects.filter(_as_read(job)).update(status=Status.EXPIRED, source="", mp3=""):
            return
        tracks = Track.objects.filter(conversion_id=job["id"])
        track_names = list(tracks.values_list("mp3", flat=True))
        tracks.delete()
    logger.info("conversion %s: %s, expired (its files were kept as long as the service keeps them)",
                job["id"], job["status"])
    swept.expired.append(job["id"])
    _remove_files([name for name in (job["source"], job["mp3"], *track_names) if name], swept)


def _remove_files(names: list[str], swept: Swept) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except STORAGE_ERRORS as exc:
            # No row names it any more: the orphan scan removes it later.
            logger.warning("could not remove %s: %r; the orphan scan will", name, exc)
        else:
            swept.files.append(name)


# --- Orphans -----------------------------------------------------------------------------------------------------
def stored_orphans_remove(*, now: datetime, swept: Swept | None = None, renew: Callable[[], None] = _nothing) -> Swept:
    """Remove the stored files and unfinished uploads' bytes older than ORPHAN_GRACE_HOURS that no row needs.

    A file is needed when a job's row names it (its source, MP3 or a track), when its job is still queued, fetching
    or processing (it may be about to name it), or when a resumable upload in progress holds it. Each batch is listed
    before the rows are read, so a file stored just before its row was written is seen with its row."""
    swept = swept if swept is not None else Swept()
    inventory = store_inventory()
    before = now - timedelta(hours=settings.ORPHAN_GRACE_HOURS)
    for batch in _chunks(inventory.files(before=before)):
        needed = _needed_names([stored.name for stored in batch])
        for stored in batch:
            if stored.name not in needed:
                _remove_orphan(stored.name, lambda stored=stored: inventory.remove_file(stored.name), swept)
        renew()
    for batch in _chunks(inventory.unfinished(before=before)):
        held = _held_by_uploads()
        needed = _needed_names([item.name for item in batch if item.name])
        for item in batch:
            if item.ref not in held and item.name not in needed:
                label = f"{item.name or 'GridFS chunks'} (unfinished upload {item.ref})"
                _remove_orphan(label, lambda item=item: inventory.remove_unfinished(item), swept)
        renew()
    return swept


def _chunks(items: Iterable[StoredFile | Unfinished]) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, BATCH)):
        yield batch


def _remove_orphan(label: str, remove: Callable[[], None], swept: Swept) -> None:
    try:
        remove()
    except STORAGE_ERRORS as exc:
        logger.warning("could not remove the orphan %s: %r; trying again at the next sweep", label, exc)
        return
    logger.info("removed %s: no job or upload needed it", label)
    swept.orphans.append(label)


def _needed_names(names: list[str]) -> set[str]:
    """Those of `names` a row needs (see stored_orphans_remove)."""
    owners = {uuid.UUID(match[1]) for name in names if (match := OWNER_ID.match(name))}
    if not owners:
        return set()
    named, keep_all = set(), set()
    for conversion_id, status, source, mp3 in Conversion.objects.filter(pk__in=owners).values_list(
        "id", "status", "source", "mp3"
    ):
        named |= {source, mp3}
        if status in Conversion.ACTIVE:
            keep_all.add(conversion_id)
    named |= set(Track.objects.filter(conversion_id__in=owners).values_list("mp3", flat=True))
    for upload_id, conversion_id in ResumableUpload.objects.filter(
        Q(pk__in=owners) | Q(conversion_id__in=owners)
    ).values_list("id", "conversion_id"):
        keep_all |= {upload_id, conversion_id}
    return {
        name for name in names
        if name in named or ((match := OWNER_ID.match(name)) and uuid.UUID(match[1]) in keep_all)
    }


def _held_by_uploads() -> set[str]:
    """What resumable uploads in progress hold in the store: GridFS file ids, S3 multipart upload ids."""
    held = set()
    for state in ResumableUpload.objects.values_list("store_state", flat=True):
        held |= {str(state[key]) for key in ("file_id", "upload_id") if (state or {}).get(key)}
    return held
