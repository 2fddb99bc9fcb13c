"""Reads for conversions. Every read is scoped to an owner: another user's job simply does not exist."""

import uuid

from django.db.models import QuerySet

from .models import Conversion


def conversion_list(*, user) -> QuerySet[Conversion]:
    return Conversion.objects.filter(owner=user).order_by("-created_at")


def conversion_get(*, user, conversion_id) -> Conversion | None:
    """The user's job with this id, or None (also for ids that are not UUIDs)."""
    try:
        conversion_id = uuid.UUID(str(conversion_id))
    except ValueError:
        return None
    return conversion_list(user=user).filter(pk=conversion_id).first()
