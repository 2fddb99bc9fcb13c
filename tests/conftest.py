"""Shared fixtures. The ones that start real things (SMTP server, Celery workers, media) are session-scoped.

Services the suite expects (started by tests/services.sh): MariaDB and RabbitMQ. Everything else is started here.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiosmtpd.controller import Controller
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from tests.factories import UserFactory
from tests.media import make_media
from tests.utils import wait_for

ROOT = Path(__file__).resolve().parent.parent


# --- Media -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def media(media_dir):
    """`media("mp4_aac")` → path of a generated file (made once per session)."""

    def make(name: str, *, duration: float = 2.0) -> Path:
        return make_media(name, media_dir, duration=duration)

    return make


# --- Users and clients -------------------------------------------------------------------------------------------
@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


def bearer_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


@pytest.fixture
def api_client(user) -> APIClient:
    return bearer_client(user)


@pytest.fixture
def other_client(other_user) -> APIClient:
    return bearer_client(other_user)


@pytest.fixture(scope="session", autouse=True)
def _remove_session_folders():
    """The media and static folders tests/settings.py made for this session go when it ends."""
    yield
    from django.conf import settings

    for folder in getattr(settings, "CREATED_TEMP_DIRS", []):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Throttle counters live in the cache; one test's sign-ins must not throttle the next test.
    from django.core.cache import cache

    cache.clear()


# --- SMTP --------------------------------------------------------------------------------------------------------
@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The running server: a fault test may stop it and put a new one on the same port (tests/faults).
    controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [message for message in self.messages if address in message["To"]]


@pytest.fixture(scope="session")
def smtp_server():
    """A real SMTP server (aiosmtpd) on the port EMAIL_URL names; it keeps every message it receives."""
    mailbox = Mailbox()
    mailbox.controller = Controller(mailbox, hostname="127.0.0.1", port=int(os.environ["TEST_SMTP_PORT"]))
    mailbox.controller.start()
    yield mailbox
    if mailbox.controller is not None:
        mailbox.controller.stop()


@pytest.fixture
def mailbox(smtp_server) -> Mailbox:
    return smtp_server


# --- Celery workers ----------------------------------------------------------------------------------------------
@dataclass
class WorkerProcess:
    role: str
    process: subprocess.Popen
    ready_file: Path
    log_file: Path
    tmpdir: Path | None = None  # the worker's TMPDIR, when it was given one

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def _test_database_url() -> str:
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def start_worker(role: str, workdir: Path, *, start_new_session: bool = False, **extra_env) -> WorkerProcess:
    """Start a worker role through its real entrypoint script and wait until it consumes.

    `start_new_session`: the worker leads its own process group, so a test can SIGKILL it with its pool children
    at once (os.killpg), as a pod kill does.
    """
    ready_file = workdir / f"{role}-{uuid.uuid4().hex[:8]}.ready"
    log_file = workdir / f"{role}.log"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "DATABASE_URL": _test_database_url(),
        "CELERY_WORKER_READY_FILE": str(ready_file),
        "CONVERT_CONCURRENCY": "2",
        **extra_env,
    }
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [str(ROOT / "docker" / "bin" / role)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=start_new_session,
        )
    tmpdir = Path(extra_env["TMPDIR"]) if "TMPDIR" in extra_env else None
    worker = WorkerProcess(role=role, process=process, ready_file=ready_file, log_file=log_file, tmpdir=tmpdir)

    def ready():
        if process.poll() is not None:
            raise AssertionError(f"{role} exited with {process.returncode}:\n{worker.log()[-3000:]}")
        return ready_file.exists()

    wait_for(ready, timeout=60, message=f"{role} to be ready")
    return worker


def stop_worker(worker: WorkerProcess, *, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    if worker.process.poll() is None:
        worker.process.send_signal(sig)
        try:
            worker.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def purge_queues() -> None:
    from mp3converter.celery import app

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.amqp.queues.values():
            queue(channel).declare()
            queue(channel).purge()


@pytest.fixture(scope="session")
def celery_workers(django_db_setup, django_db_blocker, smtp_server, tmp_path_factory):
    """Real `convert` and `notify` worker processes on the test database, RabbitMQ and the SMTP server."""
    workdir = tmp_path_factory.mktemp("workers")
    with django_db_blocker.unblock():
        purge_queues()
        workers = {}
        for role in ("convert-worker", "notify-worker"):
            # A TMPDIR per worker, so tests can see the temporary files a conversion leaves (it should leave none).
            tmpdir = workdir / f"tmp-{role}"
            tmpdir.mkdir()
            workers[role] = start_worker(role, workdir, TMPDIR=str(tmpdir))
    yield workers
    for worker in workers.values():
        stop_worker(worker)


@pytest.fixture
def live_workers(celery_workers, transactional_db):
    """For end-to-end tests: workers running, and rows committed for real so they can see them."""
    yield celery_workers
    for worker in celery_workers.values():
        assert worker.process.poll() is None, f"{worker.role} died:\n{worker.log()[-3000:]}"
