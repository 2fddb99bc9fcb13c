"""Reads for conversions. Every read for a user is scoped to that owner: another user's job simply does not exist."""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum, prefetch_related_objects
from django.utils import timezone

from mp3converter.prepared import PreparedRead
from notifications.selectors import notified_at

from .models import Conversion, IdempotencyKey, ResumableUpload, Track, UploadRecord


def conversion_list(*, user) -> QuerySet[Conversion]:
    """The user's jobs, newest first, each with `notified_at` (when its owner was told about this attempt) and its
    tracks (split=chapters), read in one more query for all of them."""
    return (
        Conversion.objects.filter(owner=user).annotate(notified_at=notified_at()).prefetch_related("tracks")
        .order_by("-created_at")
    )


# The job-status poll's read, compiled once per connection (mp3converter/prepared.py): the user's job by its key, and
# when its owner was told about this attempt, as the list reads it.
_OWN_JOB = PreparedRead(
    lambda owner_id, conversion_id: Conversion.objects.filter(owner_id=owner_id, pk=conversion_id)
    .annotate(notified_at=notified_at())[:1],
    owner_id=Conversion._meta.get_field("owner"),
    conversion_id=Conversion._meta.pk,
)


def conversion_get(*, user, conversion_id) -> Conversion | None:
    """The user's job with this id, or None (also for ids that are not UUIDs)."""
    try:
        conversion_id = uuid.UUID(str(conversion_id))
    except ValueError:
        return None
    conversion = _OWN_JOB.first(owner_id=user.pk, conversion_id=conversion_id)
    if conversion is not None and conversion.is_split:  # its tracks; any other job has none
        prefetch_related_objects([conversion], "tracks")
    return conversion


def conversion_map(*, user, conversion_ids: Iterable[uuid.UUID | str]) -> dict[uuid.UUID, Conversion]:
    """The user's jobs among these ids, by id. Ids that are not UUIDs, unknown or another user's are simply absent."""
    wanted = set()
    for conversion_id in conversion_ids:
        try:
            wanted.add(uuid.UUID(str(conversion_id)))
        except ValueError:
            continue
    return {conversion.id: conversion for conversion in conversion_list(user=user).filter(pk__in=wanted)}


def track_get(*, conversion: Conversion, number) -> Track | None:
    """The job's track with this number, or None (also for numbers that are not numbers)."""
    try:
        number = int(str(number))
    except ValueError:
        return None
    return next((track for track in conversion.tracks.all() if track.number == number), None)


def conversion_attempt_rows(*, conversion_id, attempt: int | None) -> QuerySet[Conversion]:
    """The job's row, narrowed to one attempt, for conditional updates: a message of an earlier attempt (from before
    a retry) matches nothing, so it changes nothing."""
    rows = Conversion.objects.filter(pk=conversion_id)
    return rows if attempt is None else rows.filter(attempt=attempt)


def conversion_counts_by_status(*, statuses: Iterable[str] = Conversion.ACTIVE) -> dict[str, int]:
    """How many jobs, all owners together, are in each of these states (the metrics' scrape, every few seconds): one
    query on the status index, cheap for the active states, which hold few jobs. A state with none is 0."""
    statuses = [str(status) for status in statuses]
    counts = dict.fromkeys(statuses, 0)
    rows = Conversion.objects.filter(status__in=statuses).values("status").annotate(jobs=Count("pk")).order_by()
    counts.update({row["status"]: row["jobs"] for row in rows})
    return counts


# The window of the uploads-per-hour limit.
UPLOAD_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Usage:
    """What an account uses of its limits right now."""

    active_jobs: int  # queued, fetching or processing
    uploads_last_hour: int  # accepted uploads, deleted jobs' included
    storage_bytes: int  # stored sources and MP3s together


def conversion_usage(*, user) -> Usage:
    rows = Conversion.objects.filter(owner=user)
    # What is stored now: a source the retention sweep removed, or an expired job's MP3, costs nothing any more.
    totals = rows.aggregate(
        sources=Sum("source_size", filter=~Q(source="")),
        mp3s=Sum("mp3_size", filter=~Q(status=Conversion.Status.EXPIRED)),
    )
    return Usage(
        active_jobs=rows.filter(status__in=Conversion.ACTIVE).count(),
        uploads_last_hour=UploadRecord.objects.filter(owner=user, created_at__gt=timezone.now() - UPLOAD_WINDOW).count(),
        storage_bytes=(totals["sources"] or 0) + (totals["mp3s"] or 0),
    )


def upload_times_last_hour(*, user) -> list[datetime]:
    """When the user's uploads of the last hour were accepted, oldest first."""
    since = timezone.now() - UPLOAD_WINDOW
    return list(
        UploadRecord.objects.filter(owner=user, created_at__gt=since).order_by("created_at").values_list("created_at", flat=True)
    )


def resumable_upload_get(*, user, upload_id) -> ResumableUpload | None:
    """The user's resumable upload with this id; None for an unknown id or another user's (a 404 alike)."""
    try:
        upload_id = uuid.UUID(str(upload_id))
    except ValueError:
        return None
    return ResumableUpload.objects.filter(pk=upload_id, owner=user).first()


def idempotency_keys_expired_before(now: datetime | None = None) -> datetime:
    """Keys first sent before this moment have expired (IDEMPOTENCY_KEY_HOURS): a request with one is new."""
    return (now or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)


def idempotency_key_get(*, user, key: str) -> IdempotencyKey | None:
    """The user's unexpired Idempotency-Key `key`, answered or still claimed; None if the user has not sent it (another
    user's key of the same text is theirs alone)."""
    return IdempotencyKey.objects.filter(
        owner=user, key_hash=IdempotencyKey.hash_key(key), created_at__gt=idempotency_keys_expired_before()
    ).first()
