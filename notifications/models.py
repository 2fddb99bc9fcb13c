"""A delivery: one notification about one attempt at a job, through one channel, and how sending it went."""

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
