"""Liveness and readiness probes against the real MariaDB, RabbitMQ, media folder and S3 server (moto's)."""

import socket

import pytest
from django.test import Client

from tests.fixtures.services import s3_storage_config

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the socket closes


@pytest.fixture
def client():
    return Client()


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "storage": "ok"}}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_is_503_when_the_broker_is_down(client, monkeypatch):
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration (Settings.broker_url).
    monkeypatch.setenv("CELERY_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{closed_port()}//")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"].startswith("unavailable")
    assert body["checks"]["database"] == "ok"


def test_readyz_is_503_when_storage_is_not_writable(client, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "missing")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "unavailable: PermissionError"
    assert response.json()["checks"]["broker"] == "ok"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_the_kubelet_by_pod_ip_over_plain_http(path, settings):
    # Production settings: only the public host is allowed and plain HTTP is redirected to HTTPS.
    settings.ALLOWED_HOSTS = ["mp3converter.com"]
    settings.SECURE_SSL_REDIRECT = True
    kubelet = Client(HTTP_HOST="10.244.1.17:8000")
    response = kubelet.get(path)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"


def test_only_the_probe_paths_skip_host_validation_and_the_https_redirect(settings):
    settings.ALLOWED_HOSTS = ["mp3converter.com"]
    settings.SECURE_SSL_REDIRECT = True
    assert Client(HTTP_HOST="10.244.1.17:8000").get("/api/schema/").status_code == 400
    assert Client(HTTP_HOST="10.244.1.17:8000").post("/healthz").status_code == 400
    redirected = Client(HTTP_HOST="mp3converter.com").get("/api/schema/")
    assert redirected.status_code == 301
    assert redirected["Location"] == "https://mp3converter.com/api/schema/"


def use_s3(settings, *, endpoint_url: str, bucket: str) -> None:
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage_config(endpoint_url=endpoint_url, bucket=bucket)}


def test_readyz_checks_the_s3_bucket(client, files_in_s3):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["storage"] == "ok"


def test_readyz_is_503_when_the_s3_bucket_is_missing(client, settings, s3_server, s3_credentials):
    use_s3(settings, endpoint_url=s3_server.endpoint_url, bucket="mp3converter-no-such-bucket")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "unavailable: ConnectionError"
    assert response.json()["checks"]["database"] == "ok"


def test_readyz_is_503_when_the_s3_server_is_down(client, settings, s3_credentials):
    use_s3(settings, endpoint_url=f"http://127.0.0.1:{closed_port()}", bucket="mp3converter-files")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "unavailable: ConnectionError"
    assert response.json()["checks"]["broker"] == "ok"
