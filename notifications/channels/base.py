"""What a notification channel is: a name, the queue its deliveries go on, and how to send one."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conversions.models import Conversion


class Channel:
    """One way of telling an owner that a job finished. Subclasses send; the services claim, record and retry.

    `send` raises on failure: an OSError (or another of the delivery task's transient errors) is tried again with
    backoff; anything else fails the delivery at once.
    """

    name: str = ""
    # The queue its deliveries go on, one per channel so a slow channel never holds up another; the notify worker
    # consumes it (docker/bin/notify-worker) and mp3converter/settings/celery.py declares it.
    queue: str = ""
    # Whether its delivery going out means the owner was told (the job's `notified_at`, notifications/selectors.py).
    tells_owner: bool = True

    def applies_to(self, conversion: Conversion) -> bool:
        """Whether this job's owner is told through this channel at all."""
        return True

    def send(self, conversion: Conversion) -> None:
        raise NotImplementedError
