"""Reads for conversions. Every read for a user is scoped to that owner: another user's job simply does not exist."""

import uuid

from django.db.models import QuerySet

from notifications.selectors import notified_at

from .models import Conversion


def conversion_list(*, user) -> QuerySet[Conversion]:
    """The user's jobs, newest first, each with `notified_at` (when its owner was told about this attempt)."""
    return Conversion.objects.filter(owner=user).annotate(notified_at=notified_at()).order_by("-created_at")


def conversion_get(*, user, conversion_id) -> Conversion | None:
    """The user's job with this id, or None (also for ids that are not UUIDs)."""
    try:
        conversion_id = uuid.UUID(str(conversion_id))
    except ValueError:
        return None
    return conversion_list(user=user).filter(pk=conversion_id).first()


def conversion_attempt_rows(*, conversion_id, attempt: int | None) -> QuerySet[Conversion]:
    """The job's row, narrowed to one attempt, for conditional updates: a message of an earlier attempt (from before
    a retry) matches nothing, so it changes nothing."""
    rows = Conversion.objects.filter(pk=conversion_id)
    return rows if attempt is None else rows.filter(attempt=attempt)
