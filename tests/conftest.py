"""Shared fixtures. The ones that start real things (SMTP and S3 servers, Celery workers, media) are session-scoped.

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
from urllib.error import URLError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import urlopen

import boto3
import pytest
from aiosmtpd.controller import Controller
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from tests.factories import UserFactory
from tests.media import make_media
from tests.utils import free_port, terminate, wait_for

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


# --- S3 ----------------------------------------------------------------------------------------------------------
# moto's server accepts any key pair; what matters is that boto3 finds these where production puts them.
S3_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "mp3converter-test", "AWS_SECRET_ACCESS_KEY": "mp3converter-test-secret"}
S3_TEST_REGION = "us-east-1"


def _bucket_name() -> str:
    return f"mp3converter-test-{uuid.uuid4().hex[:12]}"


@dataclass
class S3Server:
    """moto's standalone S3 server in its own process, spoken to over HTTP by real boto3 clients."""

    endpoint_url: str
    bucket: str  # made when the server starts; tests that need an empty bucket of their own call new_bucket()
    process: subprocess.Popen
    log_file: Path

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=S3_TEST_REGION,
            aws_access_key_id=S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def new_bucket(self) -> str:
        name = _bucket_name()
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(entry["Key"] for page in pages for entry in page.get("Contents", ()))

    def unfinished_uploads(self, bucket: str, prefix: str = "") -> list[dict]:
        """Multipart uploads begun and neither completed nor aborted: bytes stored that no object shows."""
        return self.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])

    def empty(self, bucket: str, prefix: str = "") -> None:
        client = self.client()
        for upload in self.unfinished_uploads(bucket, prefix):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for key in self.keys(bucket, prefix):
            client.delete_object(Bucket=bucket, Key=key)

    def storage_env(self, bucket: str, **extra: str) -> dict[str, str]:
        """The environment that makes the project's settings store files in `bucket` on this server (and not in a
        MongoDB the suite's environment may name for the GridFS tests)."""
        return {
            "S3_BUCKET": bucket, "S3_ENDPOINT_URL": self.endpoint_url, "S3_REGION": S3_TEST_REGION,
            "S3_ADDRESSING_STYLE": "path", "MONGODB_URI": "", **S3_TEST_CREDENTIALS, **extra,
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server (`python -m moto.server`) on a free local port, with one bucket; stopped at the end."""
    endpoint_url = f"http://127.0.0.1:{free_port()}"
    log_file = tmp_path_factory.mktemp("s3") / "moto.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(urlsplit(endpoint_url).port)],
            stdout=log, stderr=subprocess.STDOUT,
        )

    def answering() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"moto's server exited with {process.returncode}:\n{log_file.read_text()[-3000:]}")
        try:
            with urlopen(f"{endpoint_url}/moto-api/", timeout=2):
                return True
        except (URLError, OSError):
            return False

    try:
        wait_for(answering, timeout=30, message="moto's S3 server to answer")
        server = S3Server(endpoint_url=endpoint_url, bucket=_bucket_name(), process=process, log_file=log_file)
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        terminate(process, timeout=10)


@pytest.fixture
def s3_credentials(monkeypatch):
    """The test S3 key pair where boto3's default chain finds it: in the environment, as in production."""
    for name, value in S3_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def s3_storage_config(*, endpoint_url: str, bucket: str, prefix: str = "") -> dict:
    """STORAGES["default"] for files in `bucket` on the S3 server at `endpoint_url`, as S3_BUCKET and friends make it."""
    return {
        "BACKEND": "conversions.storage.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket, "endpoint_url": endpoint_url, "region_name": S3_TEST_REGION,
            "addressing_style": "path", "location": prefix, "default_acl": None, "file_overwrite": False,
        },
    }


@pytest.fixture
def files_in_s3(settings, s3_server, s3_credentials):
    """This process stores files under a fresh key prefix in the S3 server's bucket (Django rebuilds default_storage
    when STORAGES changes); yields the prefix and empties it afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": s3_storage_config(endpoint_url=s3_server.endpoint_url, bucket=s3_server.bucket, prefix=prefix),
    }
    yield prefix
    s3_server.empty(s3_server.bucket, f"{prefix}/")


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

    try:
        wait_for(ready, timeout=60, message=f"{role} to be ready")
    except AssertionError:
        terminate(process)  # never leave a half-started worker holding its node name on the broker
        raise
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
