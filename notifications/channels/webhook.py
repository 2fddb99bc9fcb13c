"""The webhook channel: when a job's attempt finishes, its one delivery makes a signed message for each of the owner's
active endpoints that wants the event, and for the job's own `webhook_url` (notifications/webhooks.py). Each message
then goes on the `webhook` queue, sent, retried and logged on its own (notifications/webhook_sending.py)."""

from __future__ import annotations

from conversions.models import Conversion

from ..webhooks import QUEUE, webhook_deliveries_create, webhooks_apply_to
from .base import Channel


class WebhookChannel(Channel):
    name = "webhook"
    queue = QUEUE
    # Its delivery is done once the messages are made, not when a receiver took them: not when the owner was told.
    tells_owner = False

    def applies_to(self, conversion: Conversion) -> bool:
        return webhooks_apply_to(conversion)

    def send(self, conversion: Conversion) -> None:
        # Database errors only (OperationalError is one of the delivery task's transient errors): tried again.
        webhook_deliveries_create(conversion=conversion)
