"""Lost messages are recovered by the reconciler: a convert worker killed with kill -9 on kombu's filesystem transport
(the `make run` default, where the unacknowledged message dies with the process), a message purged from RabbitMQ,
and a backlog, which is no loss and is left alone. Real worker processes, broker, MariaDB, ffmpeg and SMTP."""

from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.utils import timezone

from conversions.models import Conversion
from conversions.services import conversion_enqueue, conversion_reconcile
from conversions.services.reconcile import convert_messages_waiting
from tests.conversions.api.helpers import wait_running
from tests.factories import ConversionFactory
from tests.faults.helpers import (
    assert_finished_exactly_once,
    kill_worker_group,
    queue_depth,
    row,
    upload_job,
    wait_done_and_notified,
    wait_ffmpeg,
)
from tests.fixtures.workers import start_worker, start_workers, stop_worker
from tests.utils import wait_for

pytestmark = [pytest.mark.faults]

SLOW = {"normalize": "true"}  # a few seconds of ffmpeg: time to kill the worker mid-way
LONG_WAV_SECONDS = 60
# Small, so the tests need not wait two minutes; the workers look every second.
FAST_RECONCILER = {"STALE_JOB_SECONDS": "4", "RECONCILE_INTERVAL_SECONDS": "1"}


@contextmanager
def celery_broker(url: str, transport_options: dict):
    """This process publishes to another broker meanwhile (the web process's part in `make run`)."""
    from kombu import pools

    from mp3converter.celery import app

    def drop_connections():
        pools.reset()  # closes the pooled connections and forgets the pools, which are kept per broker address
        app._pool = None
        app.amqp._producer_pool = None

    names = ("broker_url", "broker_read_url", "broker_write_url", "broker_transport_options")
    saved = {name: app.conf[name] for name in names}
    drop_connections()
    app.conf.update(broker_url=url, broker_read_url=url, broker_write_url=url,
                    broker_transport_options=transport_options)
    try:
        yield
    finally:
        drop_connections()
        app.conf.update(saved)


@pytest.fixture
def filesystem_broker(session_convert_worker_stopped, tmp_path):
    """kombu's filesystem transport in a folder of the test, as `make run` uses it under var/broker/."""
    folder = tmp_path / "broker"
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True)
    options = {
        "data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"), "control_folder": str(folder / "control"),
        "store_processed": False,
    }
    worker_env = {"CELERY_BROKER_URL": "filesystem://localhost/", "CELERY_BROKER_FOLDER": str(folder)}
    with celery_broker("filesystem://localhost/", options):
        yield worker_env


@pytest.fixture
def run_command(filesystem_broker, tmp_path):
    """`run_command(**env)` starts the convert and notify workers as `make run` does, on the filesystem broker; each
    worker leads its own process group, so it can be killed with its pool processes."""
    started = []
    tmpdir = tmp_path / "worker-tmp"
    tmpdir.mkdir()

    def run(**extra_env):
        env = {**filesystem_broker, **extra_env}
        workers = dict(zip(("convert", "notify"), start_workers(
            ("convert-worker", tmp_path,
             {"start_new_session": True, "TMPDIR": str(tmpdir), "CONVERT_CONCURRENCY": "1", **env}),
            ("notify-worker", tmp_path, {"start_new_session": True, "CELERY_WORKER_HOSTNAME": "notify-fs@%h", **env}),
        )))
        started.extend(workers.values())
        return workers

    yield run
    for worker in started:
        if worker.process.poll() is None:
            kill_worker_group(worker)


def test_kill9_on_the_filesystem_transport_the_next_start_finishes_the_job(run_command, api_client, user, media,
                                                                         mailbox):
    workers = run_command()
    job_id = upload_job(api_client, media("wav", duration=LONG_WAV_SECONDS), **SLOW)
    wait_running(api_client, job_id)
    wait_ffmpeg(workers["convert"])
    kill_worker_group(workers["convert"])
    stop_worker(workers["notify"])  # Ctrl-C stops the rest of `make run`

    killed = row(job_id)
    assert killed.status == Conversion.Status.PROCESSING and killed.progress < 100
    assert convert_messages_waiting() == 0  # the job's message died with the process that held it

    workers = run_command(**FAST_RECONCILER)  # "make run" again
    conversion = wait_done_and_notified(job_id, timeout=120)
    assert (conversion.attempt, conversion.redeliveries) == (2, 1)  # a new attempt, counted as a redelivery
    assert_finished_exactly_once(job_id, user.email, mailbox)
    log = workers["convert"].log() + workers["notify"].log()  # both roles run the reconciler: either may find it
    assert f"job={job_id}" in workers["convert"].log()
    assert "queued again as attempt 2" in log
    download = api_client.get(f"/api/conversions/{job_id}/download/")
    assert download.status_code == 200
    assert len(b"".join(download.streaming_content)) == conversion.mp3_size


def test_a_message_purged_from_rabbitmq_is_published_again(convert_workers, api_client, user, media, mailbox):
    from mp3converter.celery import app

    job_id = upload_job(api_client, media("mp4_aac"))
    wait_for(lambda: queue_depth("convert") == (1, 0), timeout=15, message="the job's message in the queue")
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("convert")  # the broker lost it
    assert queue_depth("convert") == (0, 0)
    assert row(job_id).status == Conversion.Status.QUEUED

    worker = convert_workers(**FAST_RECONCILER)
    conversion = wait_done_and_notified(job_id, timeout=60)
    assert (conversion.attempt, conversion.redeliveries) == (1, 0)  # the same attempt, published again
    assert_finished_exactly_once(job_id, user.email, mailbox)
    assert "published again" in worker.log()


def test_with_the_convert_workers_at_zero_the_notify_worker_publishes_a_lost_message_again(
    convert_workers, tmp_path, api_client, user, media, mailbox
):
    # KEDA holds the convert workers at zero while the queue reads empty, which it does when the broker lost the
    # message: the always-running notify worker must find the job.
    from mp3converter.celery import app

    job_id = upload_job(api_client, media("mp4_aac"))
    wait_for(lambda: queue_depth("convert") == (1, 0), timeout=15, message="the job's message in the queue")
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("convert")
    notify = start_worker("notify-worker", tmp_path, CELERY_WORKER_HOSTNAME="notify-reconciler@%h", **FAST_RECONCILER)
    try:
        wait_for(lambda: queue_depth("convert") == (1, 0), timeout=30, message="the job published again")
        assert "published again" in notify.log()
        assert row(job_id).status == Conversion.Status.QUEUED  # nobody converts it yet

        convert_workers()  # the autoscaler sees the message and starts a convert worker
        conversion = wait_done_and_notified(job_id, timeout=60)
    finally:
        stop_worker(notify)
    assert (conversion.attempt, conversion.redeliveries) == (1, 0)
    assert_finished_exactly_once(job_id, user.email, mailbox)


def test_a_backlog_is_left_alone_and_only_missing_messages_are_published(session_convert_worker_stopped,
                                                                       session_notify_worker_stopped):
    # No reconciler runs meanwhile but the test's own (both worker roles run one).
    # Jobs waiting far longer than STALE_JOB_SECONDS, with nobody consuming: a backlog, not a loss.
    jobs = [ConversionFactory() for _ in range(5)]
    for age, job in enumerate(jobs):
        Conversion.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=2, minutes=age))
        conversion_enqueue(conversion_id=job.id, attempt=1)
    wait_for(lambda: queue_depth("convert") == (5, 0), timeout=15, message="five messages in the queue")
    assert not conversion_reconcile()
    assert queue_depth("convert") == (5, 0)

    # Two messages lost: two jobs are published again, the longest-waiting ones first, and no more.
    from mp3converter.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("convert")
    for job in jobs[:3]:
        conversion_enqueue(conversion_id=job.id, attempt=1)
    wait_for(lambda: queue_depth("convert") == (3, 0), timeout=15, message="three messages in the queue")
    done = conversion_reconcile()
    assert done.republished == [jobs[4].id, jobs[3].id]
    assert not done.requeued and not done.failed
    wait_for(lambda: queue_depth("convert") == (5, 0), timeout=15, message="five messages again")
    assert not conversion_reconcile()  # a message for every queued job again
    assert {row.status for row in Conversion.objects.all()} == {Conversion.Status.QUEUED}
