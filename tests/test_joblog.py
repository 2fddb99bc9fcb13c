"""Every log line about a job carries its id, in the web process and in the workers."""

import logging

import pytest

from mp3converter.joblog import JobFilter, job_context
from tests.conversions.api.helpers import upload, wait_finished
from tests.utils import wait_for


def test_lines_logged_inside_a_job_context_carry_the_job_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    with job_context("4c1d"):
        JobFilter().filter(record)
    assert record.job == "4c1d"
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    JobFilter().filter(outside)
    assert outside.job == "-"


@pytest.mark.e2e
def test_worker_lines_about_a_job_carry_its_id(live_workers, api_client, media):
    job = upload(api_client, media("mp4_aac")).json()
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
    assert all(f"job={job['id']}" in line for line in lines)
