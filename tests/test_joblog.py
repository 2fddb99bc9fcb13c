"""Every log line about a job carries its id, and the request's and user's that queued it, in the web process and in
the workers."""

import logging

import pytest

from mp3converter import joblog
from mp3converter.joblog import ContextFilter, job_context
from tests.conversions.api.helpers import upload, wait_finished
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
