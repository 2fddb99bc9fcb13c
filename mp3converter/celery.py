"""The Celery app shared by the web process (which only publishes) and both worker roles."""

import logging
import os
import time
from pathlib import Path

from celery import Celery, bootsteps
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_ready, worker_shutdown

from . import joblog
from .metrics.processes import MetricsServerStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mp3converter.settings")

app = Celery("mp3converter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _setting(name: str) -> str:
    return getattr(app.conf, name.lower(), "") or ""


class HeartbeatStep(bootsteps.StartStopStep):
    """Touches a file on every consumer timer tick so a liveness probe can tell a hung worker from a busy one."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        self.path = Path(_setting("worker_heartbeat_file")) if _setting("worker_heartbeat_file") else None
        self.tref = None

    def start(self, worker):
        if self.path is not None:
            interval = float(getattr(app.conf, "worker_heartbeat_seconds", 0) or 10.0)
            self.tref = worker.timer.call_repeatedly(interval, self._beat, priority=10)
            self._beat()

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _beat(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(str(time.time()))


app.steps["worker"].add(HeartbeatStep)
# The worker's metrics, on WORKER_METRICS_PORT (mp3converter/metrics/processes.py).
app.steps["worker"].add(MetricsServerStep)

logger = logging.getLogger(__name__)


def reconcile() -> None:
    """One run of the reconciler (conversions/services/reconcile.py), in the worker's main process. It never raises:
    a database or broker that is down now is tried again at the next run."""
    from django.db import connections

    from conversions.services import (
        conversion_reconcile,
        idempotency_keys_sweep,
        retention_sweep_due,
    )
    from conversions.tasks import sweep_retention_task
    from notifications.reconcile import notifications_reconcile

    try:
        done = conversion_reconcile()
        if done:
            logger.info("reconciler: %d requeued, %d failed, %d published again",
                        len(done.requeued), len(done.failed), len(done.republished))
        notifications_reconcile()  # and the notifications whose message was lost (notifications/reconcile.py)
        idempotency_keys_sweep()  # and expired Idempotency-Keys of uploads (conversions/services/idempotency.py)
        if retention_sweep_due():
            # And the retention sweep (expired resumable uploads' bytes included), every RETENTION_SWEEP_MINUTES for all workers together: as a task (on the
            # maintenance queue, for the fetch role, which holds the file store's credentials), since listing a large
            # store can take minutes and this timer also keeps the liveness file fresh.
            sweep_retention_task.apply_async()
    except Exception:
        logger.exception("reconciler: run failed; trying again at the next one")
    finally:
        # No database connection stays open in the main process: the pool processes it forks must not share one.
        connections.close_all()


RECONCILING_QUEUES = {"convert", "notify"}


@worker_ready.connect
def _start_reconciler(sender, **kwargs):
    # Both worker roles, once now and then on the worker's own timer: the convert role loses jobs when it dies, and
    # the notify role is always running, even while an autoscaler holds the convert workers at zero (KEDA scales
    # them on the queue's length, which reads 0 when the broker lost the messages).
    if not RECONCILING_QUEUES & set(sender.app.amqp.queues.consume_from):
        return
    from django.conf import settings

    reconcile()
    if settings.RECONCILE_INTERVAL_SECONDS > 0:
        sender.timer.call_repeatedly(settings.RECONCILE_INTERVAL_SECONDS, reconcile, priority=5)


@worker_ready.connect
def _write_ready_file(**kwargs):
    # The ready file appears once the worker consumes from its queues (readiness probe, test fixtures).
    if _setting("worker_ready_file"):
        path = Path(_setting("worker_ready_file"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(os.getpid()))


@worker_shutdown.connect
def _remove_ready_file(**kwargs):
    if _setting("worker_ready_file"):
        Path(_setting("worker_ready_file")).unlink(missing_ok=True)


# A task's log lines carry the request and user ids of the web request that queued it (mp3converter/joblog.py): they
# travel in the message's headers, and so on down the chain, since a worker's context is restored while it publishes.
@before_task_publish.connect
def _send_log_context(headers=None, **kwargs):
    if headers is not None:
        headers.update(joblog.outgoing_headers())


@task_prerun.connect
def _restore_log_context(task, **kwargs):
    # Task.apply() runs in the caller's process, in the caller's context: that stays.
    if not task.request.is_eager:
        joblog.task_begin(task.request)


@task_postrun.connect
def _clear_log_context(task, **kwargs):
    if not task.request.is_eager:
        joblog.task_end()
