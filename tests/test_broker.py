"""mp3converter.broker: the filesystem broker's folder stays bounded across restarts of `make run`, and its transport
never hands a consumer a half-written message or table.

The last test is the whole stack, restarted: the Procfile's roles, started as `make run` starts them.

The real cause, reproduced on a real kombu filesystem transport in a temporary folder: each start of the stack's
event reader (Flower) binds a new event queue, and a stack stopped with Ctrl-C never unbinds it, so every event
published afterwards is copied into every queue ever bound. What is simulated, to stay within a few seconds: a
Flower start is the declaration of a fresh `celeryev.<uuid>` queue, exactly the one Celery's event receiver declares,
and its reading is a drain of that queue; a job is the eight events a job's two tasks publish (sent, received,
started, succeeded, for the convert and the notify task) plus the message of each task, published through Celery's
own event dispatcher and producer, not written as files by hand. The housekeeping is the real step `make run` runs.
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from celery import Celery
from kombu import Connection, Exchange, Queue

from conversions.bench import client
from conversions.bench.stack import Stack, procfile
from mp3converter.broker import PARTIAL_SUFFIX, broker_folder_prune
from tests.utils import wait_for

ROOT = Path(__file__).resolve().parent.parent
RESTARTS = 20
JOBS = 500
TASK_EVENTS = ("task-sent", "task-received", "task-started", "task-succeeded")


def broker_connection(folder: Path) -> Connection:
    """A connection to a filesystem broker in `folder`, as the stack's settings make it (not the test's RabbitMQ)."""
    for sub in ("queue", "control", "processed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    connection = Connection("filesystem://localhost/", transport="mp3converter.broker:Transport", transport_options={
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


def test_a_message_being_written_or_an_exchange_table_being_created_is_never_read_half_done(tmp_path):
    # kombu's own transport created the file first and wrote it after: a consumer could take it empty, fail to
    # decode it and stop the whole worker. Here both half-done states, as a concurrent writer leaves them.
    folder = tmp_path / "broker"
    with broker_connection(folder) as connection:
        channel = connection.default_channel
        convert = Queue("convert", Exchange("mp3converter", type="direct"), routing_key="convert")(channel)
        convert.declare()
        (folder / "queue" / f".1_{uuid.uuid4()}.convert.msg{PARTIAL_SUFFIX}").write_bytes(b"")
        (folder / "control" / "celeryev.exchange").write_bytes(b"")  # created, not written yet

        assert convert.get(no_ack=True) is None  # the half-written message is not taken
        assert channel.get_table("celeryev") == []
        events = Queue("celeryev.x", Exchange("celeryev", type="topic"), routing_key="#")(channel)
        events.declare()
        assert [row.queue for row in channel.get_table("celeryev")] == ["celeryev.x"]
        connection.Producer(channel).publish({"job": 2}, exchange="mp3converter", routing_key="convert")
        assert convert.get(no_ack=True).payload == {"job": 2}
        assert not list((folder / "processed").iterdir())  # taken and gone, not left in the processed folder

    pruned = broker_folder_prune(queue_folder=folder / "queue", control_folder=folder / "control")
    assert pruned.messages == 1  # a message half-written when the stack stopped goes at the next start
    assert not list((folder / "queue").iterdir())


def event_queues(stack: Stack) -> set[str]:
    table = stack.broker_folder / "control" / "celeryev.exchange"
    return {row[2] for row in json.loads(table.read_text() or "[]")} if table.exists() else set()


def test_make_run_restarted_runs_a_job_flower_shows_it_and_the_broker_folder_stays_bounded(tmp_path, media):
    # Every role of the Procfile, started as `make run` starts them (migrate, the broker's housekeeping, then each
    # line's entrypoint with its settings), on the filesystem broker and SQLite in a temporary folder; twice.
    stack = Stack(tmp_path / "stack")
    assert set(stack.roles) == set(procfile()) == {"web", "fetch", "convert", "notify", "flower"}
    with stack:
        # The first Flower reads events: the three workers show up through their heartbeats.
        wait_for(lambda: len(stack.flower_json("/api/workers?status=1") or {}) == 3, timeout=20,
                 message="Flower to see the three workers")
        first_run_queues = event_queues(stack)
        assert len(first_run_queues) == 1
    files_after_first_run = stack.broker_files()

    with stack:  # `make run` again, in the same folder
        # The first Flower's event queue is gone with its messages; the new Flower has its own.
        assert len(event_queues(stack)) == 1 and not event_queues(stack) & first_run_queues
        assert not [name for name in os.listdir(stack.broker_folder / "queue")
                    if any(queue in name for queue in first_run_queues)]
        token = stack.token()
        sent = client.upload(stack.base_url, token, media("mp4_aac"))
        client.wait_done(stack.base_url, token, sent.conversion_id, timeout=30, every=0.1)

        workers = wait_for(lambda: stack.flower_json("/api/workers?status=1"), timeout=10, message="Flower")
        assert sorted(name.partition("@")[0] for name, alive in workers.items() if alive) == ["convert", "fetch", "notify"]

        def convert_task():
            tasks = (stack.flower_json("/api/tasks") or {}).values()
            return [task for task in tasks if task["name"] == "conversions.tasks.convert_video_task"
                    and task["state"] == "SUCCESS" and sent.conversion_id in str(task.get("args"))]

        assert len(wait_for(convert_task, timeout=10, message="Flower to show the convert task")) == 1
        files_with_a_job = stack.broker_files()
    # Bounded: a restart and a job add a handful of files, not one per event ever published.
    assert files_after_first_run < 100 and files_with_a_job < 100, (files_after_first_run, files_with_a_job)
