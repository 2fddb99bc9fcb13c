"""What web's `/metrics` reads at scrape time rather than counts as it goes: the jobs in each active state (one
query on the status index) and the messages waiting in each queue (a passive declare per queue, on RabbitMQ and on
the filesystem broker of `make run` alike).

Every web pod reports the same values, so a query takes their `max`, never their `sum`. A database or broker that
does not answer leaves its metrics out of that scrape (and `mp3converter_broker_up` says 0); the scrape itself never
fails for it.
"""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

# Seconds to reach the broker before a scrape gives up on the queue lengths (Prometheus waits 10 s by default).
BROKER_TIMEOUT = 2.0


def _conversions_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "mp3converter_conversions", "Jobs queued, fetching or processing now, by status.", labels=["status"]
    )


def _queue_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "mp3converter_queue_messages", "Messages waiting in each queue (not those a worker holds).", labels=["queue"]
    )


def _broker_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("mp3converter_broker_up", "1 when this scrape could read the queues from the broker.")


class ConversionsCollector:
    """Jobs by active status, from the database."""

    def describe(self):
        return [_conversions_family()]

    def collect(self):
        from django.db import DatabaseError

        from conversions.selectors import conversion_counts_by_status

        try:
            counts = conversion_counts_by_status()
        except DatabaseError as exc:
            logger.warning("metrics: could not count the jobs by status: %r", exc)
            return
        family = _conversions_family()
        for status, jobs in counts.items():
            family.add_metric([status], jobs)
        yield family


def queue_lengths(queues: list[str], *, timeout: float = BROKER_TIMEOUT) -> dict[str, int]:
    """Messages waiting in each queue that exists, by a passive declare on one connection; a queue the broker does not
    have is left out. Raises the broker's error when it cannot be reached."""
    from mp3converter.celery import app

    lengths = {}
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        for queue in queues:
            channel = connection.channel()  # a NOT_FOUND closes its channel: one per queue
            try:
                lengths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors:
                continue
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - already closed by the broker's NOT_FOUND
                    pass
    return lengths


class QueueCollector:
    """Messages per queue of the settings' CELERY_TASK_QUEUES, from the broker."""

    def describe(self):
        return [_queue_family(), _broker_family()]

    def collect(self):
        from django.conf import settings

        up = _broker_family()
        try:
            lengths = queue_lengths([queue.name for queue in settings.CELERY_TASK_QUEUES])
        except Exception as exc:  # noqa: BLE001 - any failure to read the broker only costs this scrape its queues
            logger.warning("metrics: could not read the queue lengths: %r", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        family = _queue_family()
        for queue, messages in lengths.items():
            family.add_metric([queue], messages)
        yield family


# Families a scrape of web adds to what the processes counted: name -> its labels (the deploy tests check the
# alerts' and dashboard's queries against these and instruments.py).
SCRAPE_TIME_FAMILIES = {
    family.name: tuple(family._labelnames)
    for family in (_conversions_family(), _queue_family(), _broker_family())
}
