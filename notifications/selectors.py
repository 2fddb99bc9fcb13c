"""Reads for notifications."""

from django.db.models import OuterRef, Subquery

from .models import Delivery


def _deliveries_of(conversion, attempt):
    return Delivery.objects.filter(
        conversion=conversion, attempt=attempt, state=Delivery.State.DELIVERED
    ).order_by("delivered_at").values_list("delivered_at", flat=True)


def notified_at() -> Subquery:
    """For annotating conversions: when the owner was first told about the job's current attempt (None: not yet)."""
    return Subquery(_deliveries_of(OuterRef("pk"), OuterRef("attempt"))[:1])

