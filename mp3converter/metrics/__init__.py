"""Prometheus metrics: what the service counts, and how they are served.

- `instruments`: every metric the code observes, and the small functions services and tasks call to observe them
  (`conversion_finished_observed`, `webhook_delivery_observed`, ...);
- `http` and `database`: the requests and the queries, timed at a few microseconds each;
- `collectors`: what is read at scrape time on web: jobs by status from the database, messages per queue;
- `exposition`: `/metrics` on web and each worker's metrics port, behind `METRICS_TOKEN`;
- `processes`: the several processes of a role (gunicorn's workers, Celery's pool) counted as one: prometheus_client's
  multiprocess mode, and the worker's metrics server; `gunicorn_config` is gunicorn's side of it.

Callers import the observing functions from here.
"""

from .instruments import (
    WEBHOOK_OUTCOMES,
    conversion_finished_observed,
    redelivery_observed,
    storage_error_observed,
    webhook_delivery_observed,
)

__all__ = [
    "WEBHOOK_OUTCOMES",
    "conversion_finished_observed",
    "redelivery_observed",
    "storage_error_observed",
    "webhook_delivery_observed",
]
