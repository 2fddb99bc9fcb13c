"""Every log line about a job carries its id, and the request's and user's that queued it, in the web process and in
the workers."""

import json
import logging
import uuid

import pytest

from mp3converter import joblog
from mp3converter.joblog import ContextFilter, job_context
from tests.conversions.api.helpers import upload, wait_finished
from tests.fixtures.workers import purge_queues, start_workers, stop_workers
from tests.utils import wait_for


def stamped(**extra) -> logging.LogRecord:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    for name, value in extra.items():
        setattr(record, name, value)
    ContextFilter().filter(record)
    return record


def test_lines_logged_inside_a_job_context_carry_the_job_id():
    with job_context("4c1d"):
        record = stamped()
    assert record.job == "4c1d"
    outside = stamped()
    assert (outside.job, outside.request_id, outside.user_id) == ("-", "-", "-")


def test_lines_logged_for_a_request_carry_its_id_and_the_user_once_known():
    user = []
    joblog.request_begin("r-1", user=lambda: user[0] if user else None)
    try:
        assert (stamped().request_id, stamped().user_id) == ("r-1", "-")
        user.append("42")
        assert (stamped().request_id, stamped().user_id) == ("r-1", "42")
        assert stamped(request_id="given").request_id == "given"  # a call's own `extra` wins
    finally:
        joblog.request_end()
    assert (stamped().request_id, stamped().user_id) == ("-", "-")


def test_a_task_carries_the_known_ids_in_its_headers_and_its_worker_restores_them():
    assert joblog.outgoing_headers() == {}
    joblog.request_begin("r-2", user=lambda: None)
    try:
        assert joblog.outgoing_headers() == {"log_request_id": "r-2"}
        joblog.request_begin("r-2", user=lambda: "7")
        headers = joblog.outgoing_headers()
    finally:
        joblog.request_end()
    assert headers == {"log_request_id": "r-2", "log_user_id": "7"}

    joblog.task_begin(headers)
    try:
        assert (stamped().request_id, stamped().user_id) == ("r-2", "7")
    finally:
        joblog.task_end()
    assert (stamped().request_id, stamped().user_id) == ("-", "-")


@pytest.mark.parametrize(
    "headers",
    [
        {"log_request_id": "x\nlevel=ERROR job=forged", "log_user_id": "1 injected"},
        {"log_request_id": "a" * 65, "log_user_id": "-1"},
        {"log_request_id": 5, "log_user_id": 5},
        {"log_request_id": ["r"], "log_user_id": {"id": 1}},
    ],
)
def test_a_task_ignores_ids_that_are_not_sane(headers):
    joblog.task_begin(headers)
    try:
        assert (stamped().request_id, stamped().user_id) == ("-", "-")
    finally:
        joblog.task_end()


@pytest.mark.e2e
def test_worker_lines_about_a_job_carry_its_id(live_workers, api_client, user, media):
    response = upload(api_client, media("mp4_aac"))
    request_id, job = response["X-Request-ID"], response.json()
    wait_finished(api_client, job["id"])

    def lines_about_the_job():
        found = [
            line
            for worker in live_workers.values()
            for line in worker.log().splitlines()
            if f"conversion {job['id']}" in line
        ]
        # "done" from the convert worker and "owner notified" from the notify worker.
        return found if any("done" in line for line in found) and any("notified" in line for line in found) else None

    lines = wait_for(lines_about_the_job, timeout=30, message="the workers' log lines about the job")
    assert all(f"request={request_id} user={user.pk} job={job['id']}" in line for line in lines)


@pytest.fixture
def json_log_workers(live_workers, tmp_path):
    """The session's convert and notify workers swapped, for this test, for ones that write JSON lines; the session's
    come back for the next test that wants them."""
    roles = ("convert-worker", "notify-worker")
    live_workers.stop(*roles)  # the next test that wants them starts fresh ones (tests/fixtures/workers.py)
    started = {}
    try:
        for role in roles:
            (tmp_path / f"tmp-{role}").mkdir()
        # The suite runs as root, which Celery warns about on stderr before logging is set up (a pod runs as a user):
        # that warning is the one line not written through logging.
        json_env = {"LOG_FORMAT": "json", "PYTHONWARNINGS": "ignore::UserWarning"}
        started = dict(zip(roles, start_workers(
            *((role, tmp_path, {"TMPDIR": str(tmp_path / f"tmp-{role}"), **json_env}) for role in roles)
        )))
        yield started
    finally:
        stop_workers(started.values())
        purge_queues()  # messages a failed test left in flight must not reach the next test's workers


def json_lines(worker) -> list[dict]:
    lines = []
    for line in worker.log().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{worker.role} wrote a line that is not JSON: {line!r}")
    return lines


@pytest.mark.e2e
def test_a_requests_ids_reach_the_json_lines_of_its_tasks_in_the_workers(json_log_workers, api_client, user, media):
    request_id = f"e2e-{uuid.uuid4().hex[:12]}"
    with open(media("mp4_aac"), "rb") as source:
        response = api_client.post(
            "/api/conversions/", {"file": source}, format="multipart", HTTP_X_REQUEST_ID=request_id
        )
    assert response.status_code == 202, response.content
    assert response["X-Request-ID"] == request_id
    job_id = response.json()["id"]
    assert wait_finished(api_client, job_id)["status"] == "done"

    def about_the_job() -> dict[str, list[dict]] | None:
        found = {
            role: [line for line in json_lines(worker) if line.get("job_id") == job_id]
            for role, worker in json_log_workers.items()
        }
        convert_done = any(": done" in line["message"] for line in found["convert-worker"])
        notified = any("owner notified" in line["message"] for line in found["notify-worker"])
        return found if convert_done and notified else None

    found = wait_for(about_the_job, timeout=30, message="the workers' JSON lines about the job")
    for role, lines in found.items():
        for line in lines:
            # The convert step was queued by the request; the notify step by the convert worker, and the delivery by
            # the notify worker: the ids went along each time.
            assert (line.get("request_id"), line.get("user_id")) == (request_id, str(user.pk)), (role, line)
            assert {"timestamp", "level", "logger", "message"} <= set(line), line
            assert line["timestamp"].endswith("Z")
    # Celery's own line about the task's end is written while the ids apply too.
    assert any(
        line["logger"] == "celery.app.trace" and line.get("request_id") == request_id
        for line in json_lines(json_log_workers["notify-worker"])
    )
