"""The notifications' reconciler: finds notifications whose message was lost, and queues them again.

The messages of notifications are lost as a job's are (conversions/services/reconcile.py): on kombu's filesystem
transport a notify worker killed with kill -9 takes every message it holds along, a delivery waiting for its retry's
countdown too; a broker can lose a queue; the chain's notify step can fail to be published after the conversion
finished. The rows are the truth:

- a job `done` or `failed` (never `cancelled`) that finished more than STALE_JOB_SECONDS ago, but within RECENT
  (a day: an upgrade never mails about old jobs), with no delivery for its current attempt never had its notify step
  run. The reconciler runs that step itself, attempt-fenced (`notifications_dispatch`): the deliveries it makes are
  the mark that it ran, since the unique constraint per job, channel and attempt lets only one be made, so the next
  run (or a reconciler in another worker at the same moment) finds them and does nothing more.
- a `pending` or `claimed` delivery whose message was due more than STALE_JOB_SECONDS ago (its `next_try_at`: when it
  was made, when its backoff ends after a failed try, when its claim expires) is published again. A delivery waiting
  for its backoff, or for a live claim, is not due yet and is left alone. A duplicate is harmless: the delivery task
  claims the row before it sends. Its tries are kept, so DELIVERY_MAX_TRIES still applies.
- a `pending` or `claimed` webhook message (notifications/webhook_sending.py) due more than STALE_JOB_SECONDS ago is
  published again the same way. This is also how a message waiting longer than a worker should hold a countdown
  (WEBHOOK_MAX_COUNTDOWN) is sent: once it is due, by the next run after STALE_JOB_SECONDS.

Every change is a conditional update on the row as it was read, so reconcilers in several workers at once publish
each delivery once; running it again changes nothing more. Convert workers run it with the jobs' reconciler, when
they start and every RECONCILE_INTERVAL_SECONDS (mp3converter/celery.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from conversions.models import Conversion
from mp3converter.joblog import job_context

from .channels import CHANNELS
from .models import Delivery, WebhookDelivery
from . import services, webhooks

logger = logging.getLogger(__name__)

State = Delivery.State
WebhookState = WebhookDelivery.State
# Finished jobs looked at: older ones are never notified by the reconciler (an upgrade must not mail about them).
RECENT = timedelta(hours=24)
# Rows looked at per run and rule: a run stays short; the next one takes the rest.
BATCH = 500


@dataclass
class NotificationsReconciled:
    """What one run did."""

    dispatched: list = field(default_factory=list)  # job ids whose notify step was lost, and is run now
    republished: list[int] = field(default_factory=list)  # delivery ids whose message was lost, published again
    webhooks: list[int] = field(default_factory=list)  # webhook message ids due, published again

    def __bool__(self) -> bool:
        return bool(self.dispatched or self.republished or self.webhooks)


def notifications_reconcile(*, now: datetime | None = None) -> NotificationsReconciled:
    """Queue again every notification whose message was lost (see the module's docstring)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.STALE_JOB_SECONDS)
    done = NotificationsReconciled()
    _dispatch_never_notified(cutoff=cutoff, now=now, done=done)
    _republish_overdue(cutoff=cutoff, now=now, done=done)
    _republish_due_webhooks(cutoff=cutoff, now=now, done=done)
    if done:
        logger.info("reconciler: %d notify steps run, %d deliveries and %d webhook messages published again",
                    len(done.dispatched), len(done.republished), len(done.webhooks))
    return done


def _dispatch_never_notified(*, cutoff: datetime, now: datetime, done: NotificationsReconciled) -> None:
    has_delivery = Delivery.objects.filter(conversion=OuterRef("pk"), attempt=OuterRef("attempt"))
    jobs = (
        Conversion.objects.filter(status__in=Conversion.FINISHED, finished_at__gte=now - RECENT,
                                  finished_at__lt=cutoff)
        .exclude(Exists(has_delivery))
        .select_related("owner")
        .order_by("finished_at")[:BATCH]
    )
    for job in jobs:
        if not any(channel.applies_to(job) for channel in CHANNELS.values()):
            continue  # nobody to tell: no delivery is ever made for it
        with job_context(job.id):
            try:
                made = services.notifications_dispatch(conversion_id=job.id, attempt=job.attempt, only_new=True)
            except BrokerError as exc:
                # The deliveries are made and pending: the next rule publishes them once they are overdue.
                logger.error("conversion %s: could not queue the notification: %r", job.id, exc)
                continue
            if made:
                logger.warning("conversion %s: %s at %s with nobody told about attempt %d: notify step run again",
                               job.id, job.status, job.finished_at, job.attempt)
                done.dispatched.append(job.id)


def _as_read(delivery: dict) -> Q:
    """The row still as it was read: nobody claimed, settled or published it meanwhile."""
    def same(name: str) -> Q:
        value = delivery[name]
        return Q(**{f"{name}__isnull": True}) if value is None else Q(**{name: value})

    return Q(pk=delivery["id"], state=delivery["state"]) & same("claimed_at") & same("next_try_at")


def _republish_overdue(*, cutoff: datetime, now: datetime, done: NotificationsReconciled) -> None:
    overdue = (
        Delivery.objects.filter(state__in=(State.PENDING, State.CLAIMED))
        .annotate(due=Coalesce("next_try_at", "updated_at"))
        .filter(due__lt=cutoff)
        .order_by("due")
        .values("id", "conversion_id", "channel", "state", "tries", "claimed_at", "next_try_at", "due")[:BATCH]
    )
    for delivery in overdue:
        with job_context(delivery["conversion_id"]):
            # Published now, so due now: the next run leaves it alone for STALE_JOB_SECONDS. Its tries stay.
            if not Delivery.objects.filter(_as_read(delivery)).update(next_try_at=now):
                continue  # another reconciler, or a worker, got there first
            logger.warning("conversion %s: %s delivery %s (%s, %d tries) due since %s, published again",
                           delivery["conversion_id"], delivery["channel"], delivery["id"], delivery["state"],
                           delivery["tries"], delivery["due"])
            done.republished.append(delivery["id"])
            try:
                services._enqueue(Delivery(pk=delivery["id"], conversion_id=delivery["conversion_id"],
                                  channel=delivery["channel"]))
            except BrokerError as exc:
                logger.error("conversion %s: could not publish delivery %s: %r", delivery["conversion_id"],
                             delivery["id"], exc)


def _republish_due_webhooks(*, cutoff: datetime, now: datetime, done: NotificationsReconciled) -> None:
    due = (
        WebhookDelivery.objects.filter(state__in=(WebhookState.PENDING, WebhookState.CLAIMED), next_try_at__lt=cutoff)
        .order_by("next_try_at")
        .values("id", "conversion_id", "state", "tries", "claimed_at", "next_try_at")[:BATCH]
    )
    for delivery in due:
        with job_context(delivery["conversion_id"]):
            # Due now: claimable by the message published here, and left alone by the next run for a while.
            if not WebhookDelivery.objects.filter(_as_read(delivery)).update(next_try_at=now):
                continue
            logger.warning("conversion %s: webhook message %s (%s, %d tries) due since %s, published again",
                           delivery["conversion_id"], delivery["id"], delivery["state"], delivery["tries"],
                           delivery["next_try_at"])
            done.webhooks.append(delivery["id"])
            try:
                webhooks.webhook_delivery_enqueue(WebhookDelivery(pk=delivery["id"],
                                                                  conversion_id=delivery["conversion_id"]))
            except BrokerError as exc:
                logger.error("conversion %s: could not publish webhook message %s: %r", delivery["conversion_id"],
                             delivery["id"], exc)
