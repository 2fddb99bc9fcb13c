"""Reads for notifications."""

from django.db.models import OuterRef, Subquery

from .models import Delivery


def notified_at() -> Subquery:
    """For annotating conversions: when the owner was first told about the job's current attempt (None: not yet)."""
    return Subquery(
        Delivery.objects.filter(
            conversion=OuterRef("pk"), attempt=OuterRef("attempt"), state=Delivery.State.DELIVERED
        ).order_by("delivered_at").values("delivered_at")[:1]
    )
