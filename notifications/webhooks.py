"""Webhooks, the second notification channel: the owners' endpoints and their secrets, the messages made when a job
finishes, and replaying one. Sending a message is notifications/webhook_sending.py.

- An endpoint is a URL, the events it wants (`conversion.done`, `conversion.failed`) and whether it is active. Its
  URL passes the outbound guard (mp3converter/outbound.py) when it is saved, and again when each message is sent.
- Its secret (`whsec_` and 32 random bytes in base64, as Standard Webhooks has it) is shown once, when the endpoint is
  made or the secret rotated. After a rotation the previous secret keeps signing beside the new one for
  PREVIOUS_SECRET_HOURS, so a receiver can switch without refusing a message.
- A job may name a webhook of its own at upload (`webhook_url`). Its messages are signed with the account's job
  webhook secret (`JobWebhookSecret`): made when first needed, shown when its owner rotates it.
- When a job's attempt finishes, the channel's one delivery (notifications/channels/webhook.py) makes one
  `WebhookDelivery` per target, each with its body made then: `{"type", "timestamp", "data"}`, data being the job as
  the API shows it. The unique target per job and attempt makes a repeated notify step make none twice.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder

from conversions.models import Conversion
from mp3converter import outbound
from mp3converter.errors import ErrorCode, InvalidState, ServiceError

from .models import Events, JobWebhookSecret, SigningSecret, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# How long a rotated-out secret keeps signing beside the new one.
PREVIOUS_SECRET_HOURS = 24
# The event a finished job's status makes.
EVENT_OF_STATUS = {Conversion.Status.DONE: Events.CONVERSION_DONE, Conversion.Status.FAILED: Events.CONVERSION_FAILED}
QUEUE = "webhook"


class WebhookUrlRefused(ServiceError):
    """A webhook URL that cannot be used, or leads to an address the service may not reach."""

    code = ErrorCode.INVALID_REQUEST
    message = "This URL cannot be used for webhooks: only public http and https addresses can be reached."


def secret_make() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signing_secrets(signer: SigningSecret, *, now=None) -> list[str]:
    """The secrets a message is signed with: the current one, and the previous one while its grace lasts."""
    now = now or timezone.now()
    keys = [signer.secret]
    if signer.previous_secret and signer.previous_secret_until and signer.previous_secret_until > now:
        keys.append(signer.previous_secret)
    return keys


def _rotated(signer: SigningSecret) -> str:
    """Give `signer` a new secret (the old one signs on for PREVIOUS_SECRET_HOURS); the caller saves it."""
    secret = secret_make()
    signer.previous_secret = signer.secret
    signer.previous_secret_until = timezone.now() + timedelta(hours=PREVIOUS_SECRET_HOURS)
    signer.secret = secret
    return secret


def webhook_url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook URL (its form, or an address the guard refuses), as a sentence; None if fine.
    The host is resolved: the guard's answer now, checked again when each message is sent."""
    try:
        outbound.check_url(url, use="used for webhooks")
    except ServiceError as exc:
        return exc.message
    return None


def _checked_url(url: str) -> str:
    url = url.strip()
    if (problem := webhook_url_problem(url)) is not None:
        raise WebhookUrlRefused(problem, field="url")
    return url


# --- Endpoints ---------------------------------------------------------------------------------------------------
def webhook_endpoint_create(*, owner, url: str, events: list[str] | None = None, active: bool = True,
                            ) -> tuple[WebhookEndpoint, str]:
    """A new endpoint, and its secret: returned this once (the API shows it once; it is stored to sign)."""
    secret = secret_make()
    endpoint = WebhookEndpoint.objects.create(
        owner=owner, url=_checked_url(url), events=_events(events), active=active, secret=secret,
        disabled_reason="" if active else WebhookEndpoint.Disabled.OWNER,
    )
    return endpoint, secret


def _events(events: list[str] | None) -> list[str]:
    """The events in their usual order, each once; none given: every event."""
    return [event for event in Events.values if events is None or event in events]


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, url: str | None = None, events: list[str] | None = None,
                            active: bool | None = None) -> WebhookEndpoint:
    """Change what is given. A new URL is checked as at creation. Enabling an endpoint the service disabled clears
    why, and its run of failures: its waiting deliveries go on; disabling it leaves them waiting."""
    changes = {}
    if url is not None:
        changes["url"] = _checked_url(url)
    if events is not None:
        changes["events"] = _events(events)
    if active is True and not endpoint.active:
        changes.update(active=True, disabled_reason=WebhookEndpoint.Disabled.NO, failing_since=None)
    elif active is False and endpoint.active:
        changes.update(active=False, disabled_reason=WebhookEndpoint.Disabled.OWNER)
    for name, value in changes.items():
        setattr(endpoint, name, value)
    if changes:
        endpoint.save(update_fields=[*changes, "updated_at"])
    return endpoint


def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """A new secret for the endpoint, returned this once."""
    secret = _rotated(endpoint)
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_until", "updated_at"])
    return secret


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint with its deliveries' log; a message on its way finds nothing to send."""
    endpoint.delete()


def webhook_endpoint_disable(*, endpoint_id, reason: str) -> bool:
    """Disable an active endpoint for `reason` (WebhookEndpoint.Disabled); False if it was not active. Disabled for
    failing too long, its owner is emailed (through the notify worker's email queue)."""
    from accounts.verification import account_email_queue

    disabled = WebhookEndpoint.objects.filter(pk=endpoint_id, active=True).update(
        active=False, disabled_reason=reason, updated_at=timezone.now()
    )
    if not disabled:
        return False
    endpoint = WebhookEndpoint.objects.select_related("owner").get(pk=endpoint_id)
    logger.warning("webhook endpoint %s disabled: %s", endpoint_id, endpoint.get_disabled_reason_display())
    if reason == WebhookEndpoint.Disabled.FAILING:
        context = {"url": endpoint.url, "since": f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC"}
        account_email_queue(user=endpoint.owner, kind="webhook_disabled", context=context)
    return True


def job_webhook_secret(*, owner) -> JobWebhookSecret:
    """The account's secret for its jobs' own webhooks, made when first needed."""
    signer, _created = JobWebhookSecret.objects.get_or_create(owner=owner, defaults={"secret": secret_make()})
    return signer


def job_webhook_secret_rotate(*, owner) -> str:
    """A new secret for the account's jobs' own webhooks (the first one, if it had none), returned this once."""
    with transaction.atomic():
        signer = JobWebhookSecret.objects.select_for_update().filter(owner=owner).first()
        if signer is None:
            return JobWebhookSecret.objects.create(owner=owner, secret=secret_make()).secret
        secret = _rotated(signer)
        signer.save(update_fields=["secret", "previous_secret", "previous_secret_until"])
    return secret


# --- Messages ----------------------------------------------------------------------------------------------------
def _subscribed(conversion: Conversion, event: str) -> list[WebhookEndpoint]:
    # Filtered here, not by the database: SQLite (`make run`) has no JSON containment lookup.
    endpoints = WebhookEndpoint.objects.filter(owner_id=conversion.owner_id, active=True).order_by("created_at")
    return [endpoint for endpoint in endpoints if event in endpoint.events]


def webhooks_apply_to(conversion: Conversion) -> bool:
    """Whether anyone is told about this finished job by webhook: an active endpoint that wants its event, or its
    own webhook_url."""
    event = EVENT_OF_STATUS.get(conversion.status)
    return event is not None and (bool(conversion.webhook_url) or bool(_subscribed(conversion, event)))


def webhook_body(conversion: Conversion, event: str) -> str:
    """The message: the event, when it happened, and the job as the API shows it (absolute URLs on
    PUBLIC_BASE_URL)."""
    from conversions.api.serializers import ConversionOutputSerializer
    from conversions.selectors import conversion_list

    job = conversion_list(user=conversion.owner).filter(pk=conversion.pk).first() or conversion
    data = ConversionOutputSerializer(job, context={"base_url": settings.PUBLIC_BASE_URL}).data
    happened = (conversion.finished_at or timezone.now()).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event, "timestamp": happened, "data": data}, cls=JSONEncoder, separators=(",", ":"))


def webhook_deliveries_create(*, conversion: Conversion) -> list[WebhookDelivery]:
    """One message per target about the job's finished attempt, each queued once the transaction commits. Safe to
    call again: a message made already is neither made nor queued twice (the reconciler publishes lost ones)."""
    event = EVENT_OF_STATUS.get(conversion.status)
    if event is None:
        return []
    targets = [(f"endpoint:{endpoint.pk}", endpoint, "") for endpoint in _subscribed(conversion, event)]
    if conversion.webhook_url:
        targets.append((WebhookDelivery.JOB_TARGET, None, conversion.webhook_url))
    if not targets:
        return []
    body = webhook_body(conversion, event)
    made = []
    with transaction.atomic():
        for target, endpoint, url in targets:
            delivery, created = WebhookDelivery.objects.get_or_create(
                conversion_id=conversion.pk, attempt=conversion.attempt, target=target,
                defaults={"owner_id": conversion.owner_id, "endpoint": endpoint, "url": url, "event": event,
                          "body": body},
            )
            if created:
                webhook_delivery_enqueue(delivery)
                made.append(delivery)
    return made


def webhook_delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a message again now, with a fresh retry schedule: one delivered, given up or waiting for its next try.
    InvalidState while a worker is sending it, or when its endpoint is disabled."""
    if delivery.endpoint is not None and not delivery.endpoint.active:
        raise InvalidState("This endpoint is disabled: enable it (active: true) before sending a delivery again.")
    with transaction.atomic():
        moved = WebhookDelivery.objects.filter(pk=delivery.pk).exclude(state=WebhookDelivery.State.CLAIMED).update(
            state=WebhookDelivery.State.PENDING, failures=0, next_try_at=timezone.now(), claimed_at=None,
        )
        if not moved:
            raise InvalidState("This delivery is being sent right now: look again once its attempt is logged.")
        webhook_delivery_enqueue(delivery)
    delivery.refresh_from_db()
    return delivery


def webhook_delivery_enqueue(delivery: WebhookDelivery) -> None:
    """Publish the delivery's message on the `webhook` queue once the transaction commits."""
    from .tasks import deliver_webhook_task

    args = [delivery.pk, str(delivery.conversion_id)]
    transaction.on_commit(lambda: deliver_webhook_task.apply_async(args, queue=QUEUE))
