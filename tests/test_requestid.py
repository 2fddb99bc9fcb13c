"""mp3converter.requestid: a sane incoming X-Request-ID is kept, anything else is replaced, the answer carries the id,
and the lines logged for the request carry it and, once known, the user's id."""

import logging
import re
import uuid

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.utils.functional import SimpleLazyObject, empty

from mp3converter import joblog
from mp3converter.requestid import user_id_of

pytestmark = pytest.mark.django_db

NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize("sane", ["abc-123", "4f9c2a1e-7b3d-4e8a-9c1f-2d3e4f5a6b7c", "a" * 64, "edge.proxy:17_x"])
def test_a_sane_request_id_is_kept_and_echoed(client, sane):
    response = client.get("/api/docs/", HTTP_X_REQUEST_ID=sane)
    assert response.status_code == 200
    assert response["X-Request-ID"] == sane


@pytest.mark.parametrize(
    "bad", ["", "-", "a" * 65, "two words", "line\nbreak", 'quote"d', "semi;colon", "ünïcode", "-leading-dash", "a=b"]
)
def test_an_unsafe_or_long_request_id_is_replaced_with_a_new_one(client, bad):
    response = client.get("/api/docs/", HTTP_X_REQUEST_ID=bad)
    assert NEW_ID.fullmatch(response["X-Request-ID"]), response["X-Request-ID"]


def test_a_request_without_an_id_gets_a_new_one_each_time(client):
    first, second = client.get("/api/docs/")["X-Request-ID"], client.get("/api/docs/")["X-Request-ID"]
    assert NEW_ID.fullmatch(first) and NEW_ID.fullmatch(second)
    assert first != second


def test_every_answer_carries_the_id_errors_and_pages_included(client, api_client):
    for response in (
        client.get("/", HTTP_X_REQUEST_ID="page-1"),
        client.get("/api/conversions/", HTTP_X_REQUEST_ID="page-1"),  # 401
        api_client.get(f"/api/conversions/{uuid.uuid4()}/", HTTP_X_REQUEST_ID="page-1"),  # 404
        client.get("/no-such-page/", HTTP_X_REQUEST_ID="page-1"),  # Django's 404
    ):
        assert response["X-Request-ID"] == "page-1", (response.status_code, response.wsgi_request.path)


def test_probes_are_answered_before_any_id_is_made(client):
    """The kubelet's probes log nothing and need no id: they stay the cheapest answer the service makes."""
    assert "X-Request-ID" not in client.get("/healthz", HTTP_X_REQUEST_ID="probe-1")


class Collected(logging.Handler):
    """The records a logger emits, stamped as the console handler stamps them."""

    def __init__(self):
        super().__init__()
        self.addFilter(joblog.ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def collected():
    handler = Collected()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_lines_logged_for_a_request_carry_its_id_and_its_users(api_client, user, client, collected):
    # Django logs "Not Found" after the middleware has returned: the ids still apply until the answer is closed.
    missing = api_client.get(f"/api/conversions/{uuid.uuid4()}/", HTTP_X_REQUEST_ID="who-asked-1")
    assert missing.status_code == 404
    anonymous = client.get("/api/conversions/", HTTP_X_REQUEST_ID="who-asked-2")
    assert anonymous.status_code == 401

    stamped = [(record.request_id, record.user_id, record.status_code) for record in collected.records]
    assert stamped == [("who-asked-1", str(user.pk), 404), ("who-asked-2", joblog.UNKNOWN, 401)]
    # Once the answer is closed, nothing is left for lines logged outside any request.
    assert (joblog.current_request_id(), joblog.current_user_id()) == (joblog.UNKNOWN, joblog.UNKNOWN)


def test_the_user_is_never_looked_up_for_a_log_line(user):
    request = RequestFactory().get("/")
    assert user_id_of(request) is None  # no user at all yet
    looked_up = []
    request.user = SimpleLazyObject(lambda: looked_up.append(1) or user)
    assert user_id_of(request) is None
    assert looked_up == [] and request.user._wrapped is empty
    assert request.user.is_authenticated  # a view looks it up...
    assert user_id_of(request) == str(user.pk)  # ...and from then on lines carry it
    request.user = AnonymousUser()
    assert user_id_of(request) is None
