"""Sending one webhook message, as the notify worker does: claim it, sign it, POST it through the outbound guard,
log the try, and decide what comes next.

- A message is claimed by a conditional update, only when it is due (`next_try_at`) or its claim expired: two copies
  of its task (a redelivered message, one the reconciler published again) cannot both send, and a copy that comes
  early changes nothing. The claim lasts CLAIM_TIMEOUT: past it, the worker holding it died, and whoever looks next
  sends it (the try it left is logged as interrupted).
- Each try is a `WebhookAttempt`, written when it begins and completed with the status code, the duration, the error
  and when the next try is due.
- A 2xx answer delivers it. A 410 gives it up and disables its endpoint. Anything else (another status, no answer,
  an address the guard refuses now) is tried again after the next wait of WEBHOOK_RETRY_SCHEDULE, and given up
  after the last. An endpoint whose tries have failed, without a success, for WEBHOOK_DISABLE_AFTER_HOURS is
  disabled, and its owner emailed.
- Headers per Standard Webhooks: `webhook-id` (the same for every try and replay of a message), `webhook-timestamp`
  and `webhook-signature` (`v1,<base64 HMAC-SHA256>`, with the `standardwebhooks` library; two during a rotation).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks import Webhook

from mp3converter import outbound
from mp3converter.errors import ServiceError
from mp3converter.metrics import webhook_delivery_observed

from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .services import Outcome
from .webhooks import job_webhook_secret, signing_secrets, webhook_endpoint_disable

logger = logging.getLogger(__name__)

State = WebhookDelivery.State
USER_AGENT = "mp3converter (webhooks)"
# A copy of a task may run this early (the broker's countdown and the database's clock disagree a little).
EARLY = timedelta(seconds=1)
INTERRUPTED = "The worker sending this stopped before it ended (it will be tried again)."
ENDPOINT_DISABLED = "Not sent: the endpoint is disabled."
GONE = 410


def claim_timeout() -> timedelta:
    """Longer than any one try can take: WEBHOOK_TIMEOUT to connect and again for the answer, and a margin."""
    return timedelta(seconds=2 * settings.WEBHOOK_TIMEOUT + 5)


def timeout() -> urllib3.Timeout:
    return urllib3.Timeout(connect=settings.WEBHOOK_TIMEOUT, read=settings.WEBHOOK_TIMEOUT)


@dataclass(frozen=True)
class Sent:
    """How a try went, and in how many seconds the message is due again (RETRY), or its claim expires (BUSY)."""

    outcome: Outcome
    wait: float | None = None


def signed_headers(*, message_id: str, body: str, keys: list[str], at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of a message: one signature per key, space-separated."""
    signatures = " ".join(Webhook(key).sign(msg_id=message_id, timestamp=at, data=body) for key in keys)
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }


def message_id(delivery: WebhookDelivery) -> str:
    return f"msg_{delivery.message_id.hex}"


def webhook_delivery_send(*, delivery_id: int) -> Sent:
    """Try to send one webhook message, once, and record how it went. Errors of the database itself propagate (the
    claim, if it was made, then expires and the message is sent by whoever looks next)."""
    now = timezone.now()
    claimable = Q(state=State.PENDING, next_try_at__lte=now + EARLY) | Q(
        state=State.CLAIMED, claimed_at__lt=now - claim_timeout()
    )
    claimed = WebhookDelivery.objects.filter(claimable, pk=delivery_id).update(
        state=State.CLAIMED, claimed_at=now, tries=F("tries") + 1, next_try_at=now + claim_timeout()
    )
    if not claimed:
        row = WebhookDelivery.objects.filter(pk=delivery_id).values("state", "claimed_at").first()
        if row is not None and row["state"] == State.CLAIMED:
            return Sent(Outcome.BUSY, wait=(row["claimed_at"] + claim_timeout() - now).total_seconds() + 1)
        # Sent or given up already, deleted, or not due yet (an early copy: the due one comes at its time).
        return Sent(Outcome.SETTLED)
    delivery = WebhookDelivery.objects.select_related("endpoint", "owner").filter(pk=delivery_id).first()
    if delivery is None:
        return Sent(Outcome.SETTLED)  # its endpoint was deleted meanwhile, and its log with it
    WebhookAttempt.objects.filter(delivery=delivery, finished_at__isnull=True).update(
        finished_at=now, error=INTERRUPTED
    )
    attempt = WebhookAttempt.objects.create(delivery=delivery, number=delivery.tries, started_at=now)
    endpoint = delivery.endpoint
    if endpoint is not None and not endpoint.active:
        _end(delivery, attempt, now, state=State.FAILED, error=ENDPOINT_DISABLED)
        return Sent(Outcome.SETTLED)
    status, error, duration_ms = _post(delivery)
    if error is None:
        _end(delivery, attempt, now, state=State.DELIVERED, status=status, duration_ms=duration_ms, failures=0,
             delivered_at=timezone.now())
        if endpoint is not None and endpoint.failing_since is not None:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        logger.info("webhook %s (%s) delivered to %s: %s", delivery.pk, delivery.event, delivery.target, status)
        webhook_delivery_observed("sent")
        return Sent(Outcome.SENT)
    return _failed(delivery, attempt, now, status=status, error=error, duration_ms=duration_ms)


def _post(delivery: WebhookDelivery) -> tuple[int | None, str | None, int]:
    """POST the message: its status (None: no answer), the error as a sentence (None: a success), milliseconds."""
    signer = delivery.endpoint or job_webhook_secret(owner=delivery.owner)
    url = delivery.endpoint.url if delivery.endpoint is not None else delivery.url
    headers = signed_headers(
        message_id=message_id(delivery), body=delivery.body, keys=signing_secrets(signer), at=timezone.now()
    )
    started = time.monotonic()
    status = None
    try:
        status = outbound.post(url, body=delivery.body.encode(), headers=headers, timeout=timeout(),
                               user_agent=USER_AGENT)
    except ServiceError as exc:  # refused by the guard now, unreachable, timed out
        error = exc.message
    else:
        error = None if 200 <= status < 300 else outbound.status_failure(_host(url), status).message
    return status, error, round((time.monotonic() - started) * 1000)


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def _failed(delivery, attempt, now, *, status, error, duration_ms) -> Sent:
    endpoint = delivery.endpoint
    failures = delivery.failures + 1
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    gone = status == GONE
    wait = None if gone or failures > len(schedule) else schedule[failures - 1]
    next_try_at = None if wait is None else timezone.now() + timedelta(seconds=wait)
    _end(delivery, attempt, now, state=State.FAILED if wait is None else State.PENDING, status=status, error=error,
         duration_ms=duration_ms, failures=failures, next_try_at=next_try_at)
    logger.warning("webhook %s (%s) to %s: try %d failed: %s; %s", delivery.pk, delivery.event, delivery.target,
                   delivery.tries, error, "given up" if wait is None else f"next in {wait:g} s")
    webhook_delivery_observed("failed" if wait is None else "retry")
    if endpoint is not None:
        if gone:
            webhook_endpoint_disable(endpoint_id=endpoint.pk, reason=WebhookEndpoint.Disabled.GONE)
        else:
            _endpoint_failing(endpoint, now)
    return Sent(Outcome.FAILED) if wait is None else Sent(Outcome.RETRY, wait=wait)


def _endpoint_failing(endpoint: WebhookEndpoint, now: datetime) -> None:
    """Record that the endpoint is failing (since this try, unless it already was); disable it past
    WEBHOOK_DISABLE_AFTER_HOURS."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    limit = now - timedelta(hours=settings.WEBHOOK_DISABLE_AFTER_HOURS)
    if WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True, failing_since__lte=limit).exists():
        webhook_endpoint_disable(endpoint_id=endpoint.pk, reason=WebhookEndpoint.Disabled.FAILING)


def _end(delivery: WebhookDelivery, attempt: WebhookAttempt, claimed_at: datetime, *, state: str,
         status: int | None = None, error: str = "", duration_ms: int | None = None, next_try_at=None,
         **changes) -> None:
    """Log how the try ended, and settle the message (if the claim that began the try still stands)."""
    WebhookAttempt.objects.filter(pk=attempt.pk).update(
        finished_at=timezone.now(), status_code=status, error=error, duration_ms=duration_ms, next_try_at=next_try_at
    )
    WebhookDelivery.objects.filter(pk=delivery.pk, state=State.CLAIMED, claimed_at=claimed_at).update(
        state=state, next_try_at=next_try_at, **changes
    )
