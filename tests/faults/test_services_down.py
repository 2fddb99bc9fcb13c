"""The services around the app go away and come back: SMTP, RabbitMQ, the database. Real servers are stopped for real
(a closed port, a stopped broker); each test checks what is left afterwards: rows, stored files, emails."""

import os
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadhandler import FileUploadHandler
from django.db import connection
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from conversions.models import Conversion
from mp3converter.errors import DatabaseUnavailable
from notifications.models import Delivery
from tests.conversions.api.helpers import upload
from tests.factories import UserFactory
from tests.faults.helpers import (
    assert_finished_exactly_once,
    broker_reachable,
    emails_about,
    queue_depth,
    rabbitmqctl,
    stored_mp3s,
    upload_job,
)
from tests.fixtures.services import s3_storage_config
from tests.fixtures.users import bearer_client
from tests.utils import jobs as annotated_jobs
from tests.utils import stored_files, wait_for

pytestmark = [pytest.mark.faults]


def classic_upload(user, path):
    with open(path, "rb") as source:
        return Client().post("/upload", {"file": source}, HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")


# --- 4. SMTP down, then back ---------------------------------------------------------------------------------------
@contextmanager
def smtp_stopped(mailbox):
    """Stop the session's SMTP server; on the way out, start a new one on the same port (if the test has not)."""
    mailbox.controller.stop()
    mailbox.controller = None
    try:
        yield
    finally:
        if mailbox.controller is None:
            start_smtp(mailbox)


def start_smtp(mailbox) -> None:
    controller = Controller(mailbox, hostname="127.0.0.1", port=int(os.environ["TEST_SMTP_PORT"]))
    controller.start()
    mailbox.controller = controller


def test_smtp_down_then_back_sends_every_email_once(live_workers, media, mailbox):
    owners = [UserFactory() for _ in range(3)]
    with smtp_stopped(mailbox):
        jobs = [upload_job(bearer_client(owner), media("mp4_aac")) for owner in owners]

        def converted_and_waiting_to_notify():
            rows = list(annotated_jobs().filter(pk__in=jobs))
            return len(rows) == len(jobs) and all(row.status == "done" and row.notified_at is None for row in rows)

        wait_for(converted_and_waiting_to_notify, timeout=60, message="the jobs to be done, not notified")
        # Every job's email delivery has run into the dead server and holds a retry: a message per job on the
        # `email` queue that the notify worker keeps unacknowledged until its countdown ends.
        wait_for(lambda: sum(queue_depth("email")) >= len(jobs), timeout=30,
                 message="an email retry pending for every job")
        assert converted_and_waiting_to_notify()
        assert not any(emails_about(mailbox, job) for job in jobs)
        # A failed send releases its claim, so the retry can send (a claim left set would hold the email 5 minutes).
        wait_for(lambda: not Delivery.objects.filter(conversion__in=jobs, state=Delivery.State.CLAIMED).exists(),
                 timeout=10, message="the failed sends to release their claims")
        waiting = list(Delivery.objects.filter(conversion__in=jobs))
        assert len(waiting) == len(jobs)
        assert all(d.state == Delivery.State.PENDING and d.tries >= 1 and "Connection" in d.error for d in waiting)
        start_smtp(mailbox)

    # The retries back off (5 s, 10 s, 20 s ... with jitter): every email arrives within the deadline, once.
    wait_for(lambda: all(emails_about(mailbox, job) for job in jobs), timeout=90, message="every owner's email")
    wait_for(lambda: annotated_jobs().filter(pk__in=jobs, notified_at__isnull=False).count() == len(jobs),
             timeout=10, message="notified_at on every job")
    for job, owner in zip(jobs, owners):
        assert_finished_exactly_once(job, owner.email, mailbox)
        assert len(mailbox.to(owner.email)) == 1
    sent = Delivery.objects.filter(conversion__in=jobs)
    assert all(d.state == Delivery.State.DELIVERED and d.tries >= 2 and d.error == "" for d in sent)  # every try logged


# --- 5. RabbitMQ restarted with jobs in its queue --------------------------------------------------------------------
QUEUED_JOBS = 50


@contextmanager
def rabbitmq_stopped():
    """Stop RabbitMQ's app (the node and its data stay); always start it again, and wait until it takes connections.
    Other test runs share this broker: the outage lasts only as long as the block."""
    rabbitmqctl("stop_app")
    try:
        yield
    finally:
        rabbitmqctl("start_app")
        wait_for(broker_reachable, timeout=60, message="RabbitMQ to accept connections again")


def test_rabbitmq_restart_with_queued_jobs(convert_workers, live_workers, api_client, user, media, mailbox):
    # The session's convert worker is stopped (convert_workers): the jobs wait in the queue.
    source = media("mp4_aac")
    jobs = [upload_job(api_client, source) for _ in range(QUEUED_JOBS)]
    assert queue_depth("convert") == (QUEUED_JOBS, 0)
    rows_before, files_before = Conversion.objects.count(), stored_files()

    with rabbitmq_stopped():
        # While the broker is down an upload is refused, and leaves nothing behind: no row, no stored file.
        refused = upload(api_client, source)
        classic = classic_upload(user, source)

    assert refused.status_code == 503, refused.content
    assert refused.json()["code"] == "queue_unavailable"
    assert "try again" in refused.json()["detail"]
    assert refused["Retry-After"]
    assert classic.status_code == 503, classic.content
    assert classic["Content-Type"].startswith("text/plain")
    assert "queue is unavailable" in classic.content.decode()
    assert Conversion.objects.count() == rows_before
    assert stored_files() == files_before

    # Persistent messages in a durable queue: all of them survived the restart.
    assert queue_depth("convert") == (QUEUED_JOBS, 0)
    # The web side reconnects by itself: a new upload after the restart is accepted.
    jobs.append(upload_job(api_client, source))
    convert_workers(concurrency=2)

    def all_notified():
        return annotated_jobs().filter(pk__in=jobs, status="done", notified_at__isnull=False).count() == len(jobs)

    wait_for(all_notified, timeout=120, interval=0.5, message=f"all {len(jobs)} jobs to be done and notified")
    assert not Conversion.objects.filter(pk__in=jobs).exclude(status="done").exists()
    for job in jobs:
        assert_finished_exactly_once(job, user.email, mailbox)
    assert len(mailbox.to(user.email)) == len(jobs)
    assert sorted(name for job in jobs for name in stored_mp3s(job)) == sorted(f"mp3/{job}-1.mp3" for job in jobs)
    # The session's notify worker lived through the restart and reconnected by itself: it sent the emails above.
    assert live_workers["notify-worker"].process.poll() is None


# --- 6. The database unreachable during an upload ------------------------------------------------------------------
def closed_port() -> int:
    """A local TCP port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cut_database() -> None:
    """Point this process's database connection at a closed port and drop the open one: the next query fails."""
    connection.close()
    connection.settings_dict["PORT"] = str(closed_port())


@contextmanager
def database_restored():
    port = connection.settings_dict["PORT"]
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
        connection.ensure_connection()


class DatabaseGoesDownAfterTheBody(FileUploadHandler):
    """Test-only, after the app's own upload handler: once the whole body is read (the user is already signed in),
    the database becomes unreachable, so the upload fails when its limits are checked, before anything is stored."""

    def receive_data_chunk(self, raw_data, start):
        return raw_data

    def file_complete(self, file_size):
        return None

    def upload_complete(self):
        cut_database()


def folder_stamp(name: str) -> int | None:
    """When a storage folder last gained or lost an entry (FileSystemStorage), or None if there is no such folder."""
    path = Path(settings.MEDIA_ROOT) / name
    return path.stat().st_mtime_ns if path.exists() else None


def assert_database_unavailable_json(response) -> None:
    assert response.status_code == 503, response.content
    assert response.json() == {"code": "database_unavailable", "detail": DatabaseUnavailable.message}
    assert response["Retry-After"]


def assert_database_unavailable_text(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == DatabaseUnavailable.message


def test_database_unreachable_during_upload(transactional_db, user, media, settings, monkeypatch):
    source = media("mp4_aac")
    client = bearer_client(user)
    files_before = stored_files()

    # Down from the start: the request fails as it signs the user in.
    with database_restored():
        cut_database()
        from_start = upload(client, source)
        classic_from_start = classic_upload(user, source)
    assert_database_unavailable_json(from_start)
    assert_database_unavailable_text(classic_from_start)
    assert stored_files() == files_before

    # Down once the body is read (signed in, before the limits are checked): refused before anything is stored.
    settings.FILE_UPLOAD_HANDLERS = [*settings.FILE_UPLOAD_HANDLERS, f"{__name__}.DatabaseGoesDownAfterTheBody"]
    for send, check in ((lambda: upload(client, source), assert_database_unavailable_json),
                        (lambda: classic_upload(user, source), assert_database_unavailable_text)):
        sources_before = folder_stamp("sources")
        with database_restored():
            response = send()
        check(response)
        assert folder_stamp("sources") == sources_before
        assert stored_files() == files_before
    settings.FILE_UPLOAD_HANDLERS = settings.FILE_UPLOAD_HANDLERS[:-1]

    # Down right after the source was stored: the row cannot be written, and the stored source is removed again
    # (the sources folder changed, a file came and went, but lists the same files).
    store = default_storage.save

    def save_then_lose_the_database(*args, **kwargs):
        name = store(*args, **kwargs)
        cut_database()
        return name

    monkeypatch.setattr(default_storage, "save", save_then_lose_the_database)
    for send, check in ((lambda: upload(client, source), assert_database_unavailable_json),
                        (lambda: classic_upload(user, source), assert_database_unavailable_text)):
        sources_before = folder_stamp("sources")
        with database_restored():
            response = send()
        check(response)
        assert folder_stamp("sources") != sources_before, "the upload never reached the storage"
        assert stored_files() == files_before

    assert Conversion.objects.count() == 0


# --- 7. File storage unreachable or refusing at upload ---------------------------------------------------------------
STORAGE_UNAVAILABLE = "File storage is unavailable right now. Nothing was stored; please try again shortly."


@pytest.mark.parametrize("store", ["s3-server-down", "folder-not-a-directory"])
def test_storage_unavailable_during_upload(store, transactional_db, user, media, settings, s3_credentials, tmp_path):
    if store == "s3-server-down":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]  # nothing listens once the socket closes
        settings.STORAGES = {
            **settings.STORAGES, "default": s3_storage_config(endpoint_url=f"http://127.0.0.1:{closed}", bucket="files"),
        }
    else:
        # A media "folder" that is a file: the store refuses every write, as a full or read-only disk would.
        blocker = tmp_path / "media"
        blocker.write_text("not a folder")
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(blocker)}},
        }
    source = media("mp4_aac")

    native = upload(bearer_client(user), source)
    assert native.status_code == 503, native.content
    assert native.json() == {"code": "storage_unavailable", "detail": STORAGE_UNAVAILABLE}
    assert native["Retry-After"]
    classic = classic_upload(user, source)
    assert classic.status_code == 503, classic.content
    assert classic["Content-Type"].startswith("text/plain")
    assert classic.content.decode() == STORAGE_UNAVAILABLE
    assert Conversion.objects.count() == 0
