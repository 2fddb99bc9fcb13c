"""Web's /metrics: the token, the format, and what is read at scrape time from the database and the broker."""

import time

import pytest
from django.test import Client
from kombu import Connection, Exchange, Queue

from conversions.models import Conversion
from mp3converter.celery import app
from mp3converter.metrics.exposition import CHALLENGE, MetricsTokenRequired
from tests.factories import ConversionFactory
from tests.metrics.helpers import samples, value
from tests.utils import free_port

Status = Conversion.Status


def get_metrics(client: Client, authorization: str | None = None, **extra):
    if authorization is not None:
        extra["HTTP_AUTHORIZATION"] = authorization
    return client.get("/metrics", **extra)


@pytest.fixture
def token(settings) -> str:
    return settings.METRICS_TOKEN


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Token {token}", "Bearer {token}x"],
    ids=["none", "empty", "no-token", "another-token", "basic", "other-scheme", "token-plus-one"],
)
def test_without_the_token_metrics_answer_401_with_a_challenge(token, authorization):
    response = get_metrics(Client(), None if authorization is None else authorization.format(token=token))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == CHALLENGE
    assert response.content.decode().strip() == MetricsTokenRequired.message
    assert b"mp3converter_" not in response.content


@pytest.mark.django_db
def test_with_the_token_metrics_answer_in_prometheus_text_format(token):
    client = Client()
    client.get("/api/conversions/")  # a request to count: 401, no credentials
    response = get_metrics(client, f"Bearer {token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response["Cache-Control"] == "no-store"
    scraped = samples(response.content.decode())
    labels = {"method": "GET", "view": "conversion-list", "status": "401"}
    assert value(scraped, "mp3converter_http_request_duration_seconds_count", **labels) >= 1
    assert ("mp3converter_conversions_finished_total", frozenset({("status", "done"), ("error_code", "")})) in scraped
    # The scheme's case does not matter, as in HTTP.
    assert get_metrics(client, f"bearer {token}").status_code == 200


@pytest.mark.django_db
def test_without_a_token_metrics_are_open_with_debug_and_off_without(settings):
    settings.METRICS_TOKEN = ""
    settings.DEBUG = False
    assert get_metrics(Client()).status_code == 404
    assert get_metrics(Client(), "Bearer anything").status_code == 404
    settings.DEBUG = True
    assert get_metrics(Client()).status_code == 200


@pytest.mark.django_db
def test_metrics_are_answered_by_pod_address_over_plain_http(settings, token):
    """Prometheus scrapes `http://<pod IP>:8000/metrics`, like the kubelet's probes: no allowed host, no HTTPS."""
    settings.SECURE_SSL_REDIRECT = True
    client = Client(HTTP_HOST="10.244.1.7:8000")
    assert get_metrics(client, f"Bearer {token}").status_code == 200
    assert client.get("/api/conversions/").status_code == 400  # every other path still checks the host


@pytest.mark.django_db
def test_jobs_by_status_are_counted_at_scrape_time(token):
    for status, jobs in ((Status.QUEUED, 2), (Status.PROCESSING, 1), (Status.DONE, 3), (Status.FAILED, 1)):
        ConversionFactory.create_batch(jobs, status=status)
    scraped = samples(get_metrics(Client(), f"Bearer {token}").content.decode())
    counted = {
        dict(labels)["status"]: number for (name, labels), number in scraped.items() if name == "mp3converter_conversions"
    }
    # The active states, each there at 0 when empty; finished jobs are in the counters, not here.
    assert counted == {"queued": 2, "fetching": 0, "processing": 1}


@pytest.fixture
def scrape_queue(settings):
    """A queue of this test's own in the broker, the only one the scrape looks at: no worker consumes from it."""
    queue = Queue(f"metrics-test-{time.monotonic_ns()}", Exchange("metrics-test", type="direct"), routing_key="metrics")
    settings.CELERY_TASK_QUEUES = (queue,)
    with Connection(app.conf.broker_url) as connection:
        bound = queue(connection.default_channel)
        bound.declare()
        yield queue, connection
        bound.delete()


@pytest.mark.django_db
def test_messages_per_queue_are_read_from_the_broker_at_scrape_time(token, scrape_queue):
    queue, connection = scrape_queue
    producer = connection.Producer()
    for number in range(3):
        producer.publish({"n": number}, exchange=queue.exchange, routing_key="metrics", declare=[queue])
    scraped = samples(get_metrics(Client(), f"Bearer {token}").content.decode())
    assert value(scraped, "mp3converter_broker_up") == 1
    assert value(scraped, "mp3converter_queue_messages", queue=queue.name) == 3


@pytest.mark.django_db
def test_a_broker_that_does_not_answer_costs_the_scrape_its_queues_only(token, monkeypatch):
    # A port nothing listens on: the connection is refused, as when RabbitMQ is down.
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    # Celery reads CELERY_BROKER_URL from the environment before its configuration; setting the configuration instead
    # would leave it set, to the old value, after the test, and no later test could move the broker by the environment.
    monkeypatch.setenv("CELERY_BROKER_URL", nowhere)
    started = time.monotonic()
    response = get_metrics(Client(), f"Bearer {token}")
    assert response.status_code == 200
    assert time.monotonic() - started < 8  # within Prometheus' scrape timeout
    scraped = samples(response.content.decode())
    assert value(scraped, "mp3converter_broker_up") == 0
    assert not [name for name, _ in scraped if name == "mp3converter_queue_messages"]
    assert [name for name, _ in scraped if name == "mp3converter_conversions"]  # the database's part is there
