"""Reads for conversions. Every read for a user is scoped to that owner: another user's job simply does not exist."""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet, Sum, prefetch_related_objects
from django.utils import timezone

from notifications.selectors import delivered_at, notified_at

from .models import Conversion, ResumableUpload, Track, UploadRecord


def conversion_list(*, user) -> QuerySet[Conversion]:
    """The user's jobs, newest first, each with `notified_at` (when its owner was told about this attempt) and its
    tracks (split=chapters), read in one more query for all of them."""
    return (
        Conversion.objects.filter(owner=user).annotate(notified_at=notified_at()).prefetch_related("tracks")
        .order_by("-created_at")
    )


def conversion_get(*, user, conversion_id) -> Conversion | None:
    """The user's job with this id, or None (also for ids that are not UUIDs)."""
    try:
        conversion_id = uuid.UUID(str(conversion_id))
    except ValueError:
        return None
    # The job-status poll: one row by its key, with no ORDER BY and no subquery to compile; when its owner was told
    # only for a finished job (no other has a delivery), its tracks only for a split job.
    conversion = next(iter(Conversion.objects.filter(owner=user, pk=conversion_id)[:1]), None)
    if conversion is not None:
        conversion.notified_at = (
            delivered_at(conversion_id=conversion.pk, attempt=conversion.attempt)
            if conversion.status in Conversion.FINISHED else None
        )
        if conversion.is_split:
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
    totals = rows.aggregate(sources=Sum("source_size"), mp3s=Sum("mp3_size"))
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
