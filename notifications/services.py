"""Writes for notifications: decide what to send about a finished attempt, send each delivery once, resend.

Every state change of a delivery is a conditional update on its row, as with conversions: two copies of a delivery
task (a redelivered message) cannot both send. A claim left by a worker that died mid-send expires after
CLAIM_TIMEOUT; a task that finds a live claim comes back after it (`Outcome.BUSY`), so no delivery is left claimed.
"""

from __future__ import annotations

import enum
import logging
import uuid
from datetime import timedelta

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from conversions.models import Conversion
from conversions.selectors import conversion_attempt_rows

from .channels import CHANNELS
from .models import Delivery

logger = logging.getLogger(__name__)

State = Delivery.State
CLAIM_TIMEOUT = timedelta(minutes=5)
# Sends begun before a delivery whose channel keeps failing is given up: the first and ten more.
DELIVERY_MAX_TRIES = 11
# A channel's network errors (SMTP's are OSErrors) and the database's: worth trying again.
TRANSIENT_ERRORS = (OSError, OperationalError, InterfaceError)
SUPERSEDED = "Not sent: the job was retried, or is no longer finished, before this could be delivered."


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # the channel failed, for now: send again later
    FAILED = "failed"  # given up: the channel kept failing, or failed in a way trying again cannot mend
    SETTLED = "settled"  # nothing (more) to send: delivered or given up already, superseded, or deleted
    BUSY = "busy"  # a worker holds a live claim on it: look again once the claim has expired


def notifications_dispatch(
    *, conversion_id: uuid.UUID | str, attempt: int | None = None, only_new: bool = False
) -> list[Delivery]:
    """The notify step after a conversion: one delivery per channel for this finished attempt, each queued.

    Nothing for a job that is not done or failed (a cancelled one, say), was deleted, or has moved on to another
    attempt. Safe to call again: a delivery that exists is queued again only if it is not settled, and with
    `only_new` (the reconciler, which may run in several workers at once) not at all: whoever made it queued it.
    """
    conversion = conversion_attempt_rows(conversion_id=conversion_id, attempt=attempt).select_related("owner").first()
    if conversion is None or conversion.status not in Conversion.FINISHED:
        return []
    deliveries = []
    for channel in CHANNELS.values():
        if not channel.applies_to(conversion):
            continue
        delivery, created = Delivery.objects.get_or_create(
            conversion=conversion, channel=channel.name, attempt=conversion.attempt
        )
        if created or (not only_new and delivery.state not in (State.DELIVERED, State.FAILED)):
            _enqueue(delivery)
        deliveries.append(delivery)
    return deliveries


def delivery_send(*, delivery_id: int, retry_in: float = 0.0) -> Outcome:
    """Send one delivery, once, and record how it went. Errors of the database itself propagate (the claim, if it
    was made, then expires and the delivery is sent by whoever looks next). `retry_in`: the seconds the caller waits
    before trying again should this try fail (`Outcome.RETRY`), recorded as the delivery's `next_try_at` so the
    reconciler leaves a delivery waiting for its backoff alone."""
    now = timezone.now()
    claimable = Q(state=State.PENDING) | Q(state=State.CLAIMED, claimed_at__lt=now - CLAIM_TIMEOUT)
    claimed = Delivery.objects.filter(claimable, pk=delivery_id).update(
        state=State.CLAIMED, claimed_at=now, tries=F("tries") + 1, next_try_at=now + CLAIM_TIMEOUT
    )
    if not claimed:
        busy = Delivery.objects.filter(pk=delivery_id, state=State.CLAIMED).exists()
        return Outcome.BUSY if busy else Outcome.SETTLED
    delivery = Delivery.objects.select_related("conversion__owner").filter(pk=delivery_id).first()
    if delivery is None:
        return Outcome.SETTLED  # its job was deleted meanwhile
    conversion = delivery.conversion
    if conversion.attempt != delivery.attempt or conversion.status not in Conversion.FINISHED:
        _settle(delivery, now, state=State.FAILED, error=SUPERSEDED)
        return Outcome.SETTLED
    try:
        CHANNELS[delivery.channel].send(conversion)
    except Exception as exc:
        if isinstance(exc, TRANSIENT_ERRORS) and delivery.tries < DELIVERY_MAX_TRIES:
            logger.warning("delivery %s: try %d failed, to be tried again: %r", delivery.pk, delivery.tries, exc)
            next_try_at = timezone.now() + timedelta(seconds=retry_in)
            _settle(delivery, now, state=State.PENDING, error=repr(exc), next_try_at=next_try_at)
            return Outcome.RETRY
        logger.error("delivery %s: given up after %d tries: %r", delivery.pk, delivery.tries, exc, exc_info=exc)
        _settle(delivery, now, state=State.FAILED, error=repr(exc))
        return Outcome.FAILED
    _settle(delivery, now, state=State.DELIVERED, delivered_at=timezone.now(), error="")
    logger.info("conversion %s: owner notified by %s", conversion.id, delivery.channel)
    return Outcome.SENT


def notification_resend(*, conversion: Conversion, channel: str) -> Delivery:
    """Send the notification about the job's current attempt again through `channel`."""
    with transaction.atomic():
        delivery, created = Delivery.objects.get_or_create(
            conversion=conversion, channel=channel, attempt=conversion.attempt
        )
        if not created:
            # A delivery being sent right now is left to finish; any other is sent afresh.
            Delivery.objects.filter(pk=delivery.pk).exclude(state=State.CLAIMED).update(
                state=State.PENDING, error="", delivered_at=None, next_try_at=timezone.now()
            )
        _enqueue(delivery)
    return delivery


def _settle(delivery: Delivery, claimed_at, **changes) -> None:
    """Record how the try that claimed the delivery at `claimed_at` ended (if its claim still stands)."""
    Delivery.objects.filter(pk=delivery.pk, state=State.CLAIMED, claimed_at=claimed_at).update(**changes)


def _enqueue(delivery: Delivery) -> None:
    from .tasks import deliver_notification_task

    channel = CHANNELS[delivery.channel]
    args = [delivery.pk, str(delivery.conversion_id)]
    transaction.on_commit(lambda: deliver_notification_task.apply_async(args, queue=channel.queue))
