"""A role's several processes counted as one, and the workers' metrics server.

gunicorn runs web's requests in WEB_WORKERS processes and Celery runs tasks in pool processes, each with its own
memory. Under the role entrypoints (docker/bin/) every process writes its metrics to files in the role's folder,
PROMETHEUS_MULTIPROC_DIR, which the entrypoint empties at each start; a scrape sums the files (prometheus_client's
multiprocess mode), so counters survive a pool process replaced after CELERY_WORKER_MAX_TASKS_PER_CHILD tasks. When a
process ends, the gauges it kept of live things (requests in flight) are dropped: gunicorn's `child_exit` hook does
it for web (gunicorn_config.py), Celery's `worker_process_shutdown` signal for a pool process (here).

A worker's metrics are served by its main process, which outlives the pool processes, on WORKER_METRICS_PORT (a
bootstep, added to the app in mp3converter/celery.py); web serves its own at `/metrics` (http.py).
"""

import logging
import os

from celery import bootsteps
from celery.signals import worker_process_shutdown

from . import database  # noqa: F401 - every process times its database statements from its first connection

logger = logging.getLogger(__name__)


def multiprocess_dir() -> str | None:
    """The role's folder of per-process metric files, when its entrypoint set one (prometheus_client reads it too)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_ended(pid: int) -> None:
    """Drop what a process that ended kept of live things; nothing outside multiprocess mode."""
    from prometheus_client import multiprocess

    if (folder := multiprocess_dir()) is not None:
        multiprocess.mark_process_dead(pid, folder)


@worker_process_shutdown.connect
def _pool_process_ended(pid=None, **kwargs) -> None:
    process_ended(pid or os.getpid())


class MetricsServerStep(bootsteps.StartStopStep):
    """Serves the worker's metrics from its main process while it runs, once its pool processes are started (they
    are forked from it and should not hold the listening socket)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        self.server = None

    def start(self, worker):
        from django.conf import settings

        from .exposition import worker_metrics_serve

        if not settings.WORKER_METRICS_PORT:
            return
        if multiprocess_dir() is None:
            logger.warning("metrics: PROMETHEUS_MULTIPROC_DIR is not set; this server sees its main process only "
                           "(start workers through docker/bin/)")
        try:
            self.server = worker_metrics_serve(port=settings.WORKER_METRICS_PORT)
        except OSError as exc:
            # The worker's work matters more than its metrics: it runs on, and Prometheus shows the target down.
            logger.error("metrics: cannot serve on port %d: %r", settings.WORKER_METRICS_PORT, exc)

    def stop(self, worker):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
