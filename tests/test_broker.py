"""mp3converter.broker: the filesystem broker's folder stays bounded across restarts of `make run`.

The real cause, reproduced on a real kombu filesystem transport in a temporary folder: each start of the stack's
event reader (Flower) binds a new event queue, and a stack stopped with Ctrl-C never unbinds it, so every event
published afterwards is copied into every queue ever bound. What is simulated, to stay within a few seconds: a
Flower start is the declaration of a fresh `celeryev.<uuid>` queue, exactly the one Celery's event receiver declares,
and its reading is a drain of that queue; a job is the eight events a job's two tasks publish (sent, received,
started, succeeded, for the convert and the notify task) plus the message of each task, published through Celery's
own event dispatcher and producer, not written as files by hand. The housekeeping is the real step `make run` runs.
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

from celery import Celery
from kombu import Connection, Exchange, Queue

from mp3converter.broker import broker_folder_prune

ROOT = Path(__file__).resolve().parent.parent
RESTARTS = 20
JOBS = 500
TASK_EVENTS = ("task-sent", "task-received", "task-started", "task-succeeded")


def broker_connection(folder: Path) -> Connection:
    """A connection to a filesystem broker in `folder`, as the stack's settings make it (not the test's RabbitMQ)."""
    for sub in ("queue", "control", "processed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    connection = Connection("filesystem://localhost/", transport_options={
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
    })
    # kombu remembers bindings per process, across connections: forget another folder's, so they are written here.
    connection.transport.state.clear()
    return connection


def files_in(folder: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(folder))


def test_restarts_and_jobs_leave_the_broker_folder_bounded(tmp_path):
    folder = tmp_path / "broker"
    app = Celery("broker-test", set_as_current=False)
    convert_queue = Queue("convert", Exchange("mp3converter", type="direct"), routing_key="convert")
    jobs_per_run = JOBS // RESTARTS
    seen_per_run = []
    with broker_connection(folder) as connection:
        channel = connection.default_channel
        convert_queue(channel).declare()
        for _ in range(RESTARTS):
            # `make run` starts: its housekeeping first, then Flower binds its own event queue.
            broker_folder_prune(queue_folder=folder / "queue", control_folder=folder / "control")
            flower_queue = Queue(
                f"celeryev.{uuid.uuid4()}", Exchange("celeryev", type="topic"), routing_key="#", auto_delete=True
            )(channel)
            flower_queue.declare()
            dispatcher = app.events.Dispatcher(connection)
            producer = connection.Producer(channel)
            for _ in range(jobs_per_run):
                for task in ("convert", "notify"):
                    producer.publish({"task": task}, exchange="mp3converter", routing_key="convert")
                    for event in TASK_EVENTS:
                        dispatcher.send(event, uuid=str(uuid.uuid4()), name=task)
                dispatcher.send("worker-heartbeat", freq=2.0)
            seen = 0
            while flower_queue.get(no_ack=True) is not None:  # the live Flower reads its queue
                seen += 1
            seen_per_run.append(seen)
            while convert_queue(channel).get(no_ack=True) is not None:  # and the workers run the jobs
                pass
            # Ctrl-C: the stack stops without unbinding anything.

    # Every run's reader saw every event of its own run: Flower still shows tasks and workers.
    assert seen_per_run == [jobs_per_run * (2 * len(TASK_EVENTS) + 1)] * RESTARTS
    assert files_in(folder) < 1000
    # The next start leaves no event queue behind at all.
    subprocess.run(
        [sys.executable, "-m", "mp3converter.broker"], cwd=ROOT, check=True, capture_output=True,
        env={**os.environ, "CELERY_BROKER_URL": "filesystem://localhost/", "CELERY_BROKER_FOLDER": str(folder),
             "DJANGO_SETTINGS_MODULE": "mp3converter.settings"},
    )
    assert not list((folder / "queue").glob("*celeryev*"))
    assert "celeryev." not in (folder / "control" / "celeryev.exchange").read_text()


def test_prune_keeps_queued_jobs_and_the_workers_control_queues(tmp_path):
    folder = tmp_path / "broker"
    app = Celery("broker-test", set_as_current=False)
    with broker_connection(folder) as connection:
        channel = connection.default_channel
        convert = Queue("convert", Exchange("mp3converter", type="direct"), routing_key="convert")(channel)
        convert.declare()
        connection.Producer(channel).publish({"job": 1}, exchange="mp3converter", routing_key="convert")
        stale = Queue(f"celeryev.{uuid.uuid4()}", Exchange("celeryev", type="topic"), routing_key="#")(channel)
        stale.declare()
        app.events.Dispatcher(connection).send("worker-heartbeat", freq=2.0)

        pruned = broker_folder_prune(queue_folder=folder / "queue", control_folder=folder / "control")

        assert (pruned.bindings, pruned.messages) == (1, 1)
        assert convert.get(no_ack=True).payload == {"job": 1}
