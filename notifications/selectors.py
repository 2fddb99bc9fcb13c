"""Reads for notifications: when a job's owner was told, and the webhooks' endpoints and deliveries."""

import uuid

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery

from .models import Delivery, WebhookAttempt, WebhookDelivery, WebhookEndpoint


def _telling_channels() -> list[str]:
    from .channels import CHANNELS

    return [name for name, channel in CHANNELS.items() if channel.tells_owner]


def _deliveries_of(conversion, attempt):
    return Delivery.objects.filter(
        conversion=conversion, attempt=attempt, state=Delivery.State.DELIVERED, channel__in=_telling_channels()
    ).order_by("delivered_at").values_list("delivered_at", flat=True)


def notified_at() -> Subquery:
    """For annotating conversions: when the owner was first told about the job's current attempt (None: not yet).
    A webhook channel's delivery, which only makes the messages, does not count."""
    return Subquery(_deliveries_of(OuterRef("pk"), OuterRef("attempt"))[:1])


def _uuid(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def webhook_endpoint_list(*, user) -> QuerySet[WebhookEndpoint]:
    """The user's webhook endpoints, newest first."""
    return WebhookEndpoint.objects.filter(owner=user).order_by("-created_at")


def webhook_endpoint_get(*, user, endpoint_id) -> WebhookEndpoint | None:
    """One of the user's endpoints, or None: an id that is malformed, unknown or another user's alike."""
    endpoint_id = _uuid(endpoint_id)
    return None if endpoint_id is None else webhook_endpoint_list(user=user).filter(pk=endpoint_id).first()


def webhook_delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """The endpoint's messages, newest first, each with its tries in order."""
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .prefetch_related(Prefetch("attempts", queryset=WebhookAttempt.objects.order_by("number")))
        .order_by("-created_at", "-id")
    )


def webhook_delivery_get(*, endpoint: WebhookEndpoint, delivery_id) -> WebhookDelivery | None:
    """One of the endpoint's messages, or None (also for an id that is not a number)."""
    try:
        delivery_id = int(str(delivery_id))
    except ValueError:
        return None
    return webhook_delivery_list(endpoint=endpoint).select_related("endpoint").filter(pk=delivery_id).first()
