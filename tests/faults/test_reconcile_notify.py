"""Lost notification messages are recovered by the reconciler: the notify step and the email delivery purged from
RabbitMQ while no notify worker runs, and a notify worker killed with kill -9 on kombu's filesystem transport while
its delivery waits for the countdown of a retry. Real worker processes, broker, MariaDB, ffmpeg and SMTP; each time
the owner gets exactly one email."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from conversions.models import Conversion
from notifications.models import Delivery
from notifications.reconcile import notifications_reconcile
from tests.faults.helpers import (
    assert_finished_exactly_once,
    emails_about,
    kill_worker_group,
    queue_depth,
    row,
    upload_job,
    wait_done_and_notified,
)
from tests.faults import test_reconcile
from tests.fixtures.workers import start_worker, stop_worker
from tests.utils import free_port, wait_for

pytestmark = [pytest.mark.faults]

State = Delivery.State
FAST_RECONCILER = test_reconcile.FAST_RECONCILER
# `make run` on kombu's filesystem transport, as the jobs' reconciler tests run it.
filesystem_broker = test_reconcile.filesystem_broker
run_command = test_reconcile.run_command


@pytest.fixture
def notify_worker(session_notify_worker_stopped, tmp_path):
    started = []

    def start():
        started.append(start_worker("notify-worker", tmp_path))
        return started[-1]

    yield start
    for worker in started:
        stop_worker(worker)


def purge(queue: str) -> None:
    from mp3converter.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)  # the broker lost it
    assert queue_depth(queue) == (0, 0)


def test_a_notify_step_and_a_delivery_purged_from_rabbitmq_are_sent_once(notify_worker, api_client, user, media,
                                                                        mailbox):
    stale = timedelta(seconds=settings.STALE_JOB_SECONDS + 1)
    job_id = upload_job(api_client, media("mp4_aac"))
    wait_for(lambda: row(job_id).status == Conversion.Status.DONE, timeout=60, message="the job to be done")
    wait_for(lambda: queue_depth("notify") == (1, 0), timeout=30,
             message="the notify step's message in its queue")
    purge("notify")
    assert not Delivery.objects.exists()

    # Nothing yet while the notify step may still be on its way; once the job finished STALE_JOB_SECONDS ago, the
    # reconciler runs the step.
    assert not notifications_reconcile()
    Conversion.objects.filter(pk=job_id).update(finished_at=F("finished_at") - stale)
    done = notifications_reconcile()
    assert done.dispatched == [uuid.UUID(job_id)] and not done.republished
    [delivery] = Delivery.objects.all()
    wait_for(lambda: queue_depth("email") == (1, 0), timeout=15, message="the delivery's message in its queue")

    # The broker loses the delivery's message too: once it is overdue, it is published again, once.
    purge("email")
    assert not notifications_reconcile()
    later = timezone.now() + stale
    done = notifications_reconcile(now=later)
    assert done.republished == [delivery.pk] and not done.dispatched
    assert not notifications_reconcile(now=later)
    wait_for(lambda: queue_depth("email") == (1, 0), timeout=15, message="the delivery's message again")

    notify_worker()
    wait_done_and_notified(job_id, timeout=60)
    assert_finished_exactly_once(job_id, user.email, mailbox)
    sent = Delivery.objects.get(pk=delivery.pk)
    assert (sent.state, sent.tries) == (State.DELIVERED, 1)


def test_kill9_of_the_notify_worker_mid_backoff_on_the_filesystem_transport_sends_once(run_command, filesystem_broker,
                                                                                      api_client, user, media, mailbox):
    # SMTP unreachable at first: the delivery fails and waits for its retry's countdown in the notify worker.
    workers = run_command(EMAIL_URL=f"smtp://127.0.0.1:{free_port()}")
    job_id = upload_job(api_client, media("mp4_aac"))
    queue_folder = Path(filesystem_broker["CELERY_BROKER_FOLDER"]) / "queue"

    def waiting_for_backoff():
        delivery = Delivery.objects.filter(conversion_id=job_id).first()
        if delivery is None or delivery.state != State.PENDING or delivery.tries < 1:
            return None
        # The retry's message taken from the queue folder by the worker (the transport polls it every second), and
        # at least a second of countdown left: the kill lands while only the worker holds the message.
        if any(queue_folder.glob("*.email.msg")):
            return None
        return delivery if delivery.next_try_at > timezone.now() + timedelta(seconds=1) else None

    waiting = wait_for(waiting_for_backoff, timeout=120, interval=0.02, message="a delivery waiting for its retry")
    kill_worker_group(workers["notify"])
    stop_worker(workers["convert"])  # Ctrl-C stops the rest of `make run`
    killed = Delivery.objects.get(pk=waiting.pk)
    assert (killed.state, killed.tries) == (State.PENDING, waiting.tries)
    assert "ConnectionRefusedError" in killed.error
    assert emails_about(mailbox, job_id) == []

    workers = run_command(**FAST_RECONCILER)  # "make run" again, SMTP reachable
    wait_done_and_notified(job_id, timeout=90)
    assert_finished_exactly_once(job_id, user.email, mailbox)
    sent = Delivery.objects.get(pk=waiting.pk)
    assert (sent.state, sent.tries) == (State.DELIVERED, waiting.tries + 1)  # its tries were kept
    log = workers["convert"].log() + workers["notify"].log()  # both roles run the reconciler: either may find it
    assert f"delivery {waiting.pk} (pending, {waiting.tries} tries)" in log and "published again" in log
    assert f"job={job_id}" in log
