"""A delivery: one notification about one attempt at a job, through one channel, and how sending it went; and the
webhooks: endpoints, their secrets, each message and each try at sending it."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Delivery(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"  # to be sent: for the first time, or again after a failed try
        CLAIMED = "claimed"  # a worker is sending it right now
        DELIVERED = "delivered"
        FAILED = "failed"  # given up on, or no longer worth sending (the job was retried meanwhile)

    conversion = models.ForeignKey("conversions.Conversion", on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=32)
    # The job's attempt this is about: a retry is a new attempt, and its owner is told again.
    attempt = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    # How many times sending was begun.
    tries = models.PositiveIntegerField(default=0)
    # Set when a worker claims the delivery, so a second copy of its task cannot send too; a claim older than
    # CLAIM_TIMEOUT (notifications/services.py) belongs to a worker that died mid-send, and may be taken over.
    claimed_at = models.DateTimeField(null=True, blank=True)
    # When the delivery's message is next due at a worker: at once when it is made or resent, after the backoff when a
    # try failed, once the claim expires while claimed, and when the reconciler published it again. A pending or
    # claimed delivery overdue by STALE_JOB_SECONDS lost its message (notifications/reconcile.py). Empty on rows
    # written by a release before it: their `updated_at` stands in.
    next_try_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The last failed try's error, for operators.
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["conversion", "channel", "attempt"], name="delivery_once_per_attempt")
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.channel} for {self.conversion_id} (attempt {self.attempt}): {self.state}"


# --- Webhooks (notifications/webhooks.py) ----------------------------------------------------------------------------
class Events(models.TextChoices):
    """What a webhook is sent about: a job's attempt finished, one way or the other."""

    CONVERSION_DONE = "conversion.done"
    CONVERSION_FAILED = "conversion.failed"


def all_events() -> list[str]:
    return list(Events.values)


class SigningSecret(models.Model):
    """A Standard Webhooks signing secret (`whsec_` and base64). Stored as it is, since signing needs it; shown to its
    owner once, when made or rotated, and never again (nor by the admin). After a rotation the previous secret signs
    too, beside the new one, until `previous_secret_until`, so a receiver can switch without losing a message."""

    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        abstract = True


class WebhookEndpoint(SigningSecret):
    """A URL of its owner's that is told, by a signed POST, when one of their jobs is done or failed."""

    class Disabled(models.TextChoices):
        NO = "", "not disabled"
        OWNER = "owner", "by its owner"
        GONE = "gone", "the endpoint answered 410 Gone"
        FAILING = "failing", "its deliveries kept failing"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2048)
    events = models.JSONField(default=all_events)
    active = models.BooleanField(default=True)
    # Why the endpoint is not active (the service disables it on a 410, or after WEBHOOK_DISABLE_AFTER_HOURS of
    # failures); its owner enabling it again clears it.
    disabled_reason = models.CharField(max_length=16, choices=Disabled.choices, blank=True, default=Disabled.NO)
    # When the current run of failed tries began; a success ends it. Past WEBHOOK_DISABLE_AFTER_HOURS: disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="webhook_endpoint_owner")]

    def __str__(self) -> str:
        return f"{self.url} ({'active' if self.active else 'disabled'})"


class JobWebhookSecret(SigningSecret):
    """The secret that signs the webhooks sent to a job's own `webhook_url` (an upload option): one per account."""

    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="job_webhook_secret")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"job webhook secret of {self.owner_id}"


class WebhookDelivery(models.Model):
    """One webhook message about one job attempt to one target (an endpoint, or the job's own `webhook_url`), and how
    sending it goes. Its body is made once, when the job finished; every try and every replay send that body, under
    the same `webhook-id`, so a receiver can tell a repeat."""

    class State(models.TextChoices):
        PENDING = "pending"  # to be sent at `next_try_at`
        CLAIMED = "claimed"  # a worker is sending it right now
        DELIVERED = "delivered"
        FAILED = "failed"  # given up: the schedule ran out, a 410, or the endpoint was disabled or deleted

    JOB_TARGET = "job"

    message_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Null for a job's own webhook_url, whose URL is `url`. An endpoint's deliveries go to its URL as it is when sent.
    endpoint = models.ForeignKey(WebhookEndpoint, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="deliveries")
    url = models.URLField(max_length=2048, blank=True)
    # "endpoint:<id>" or "job": with the job and its attempt, what makes a message once (a repeated notify step
    # finds it made).
    target = models.CharField(max_length=64)
    # Not a foreign key: the message stands, and is sent, after its job was deleted.
    conversion_id = models.UUIDField(db_index=True)
    attempt = models.PositiveIntegerField()
    event = models.CharField(max_length=32, choices=Events.choices)
    body = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    tries = models.PositiveIntegerField(default=0)  # tries begun, replays included
    # Failed tries since the last success or replay: which wait of WEBHOOK_RETRY_SCHEDULE comes next.
    failures = models.PositiveIntegerField(default=0)
    next_try_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["conversion_id", "attempt", "target"], name="webhook_once_per_target")
        ]
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint"),
            models.Index(fields=["state", "next_try_at"], name="webhook_delivery_due"),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} for {self.conversion_id} to {self.target}: {self.state}"


class WebhookAttempt(models.Model):
    """One try at sending a webhook message: begun when a worker claims it, completed with what the receiver did."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()  # the delivery's `tries` when it began: 1, 2, ...
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)  # null while it runs, or if its worker died
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # null: no answer
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)  # why it failed, as a sentence; empty for a success
    next_try_at = models.DateTimeField(null=True, blank=True)  # when the next try is due; null: none is

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_once")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error or 'running'}"
