"""Fixtures for fault tests: convert workers a test may kill, instead of the session's shared one, and the session's
workers stopped for a test that must be alone with the broker."""

import pytest

from tests.faults.helpers import kill_worker_group
from tests.fixtures.workers import purge_queues, start_worker


@pytest.fixture
def session_convert_worker_stopped(live_workers):
    """The session's convert worker stopped for this test, so only the test's own workers take conversions (the next
    test that wants it running starts a fresh one: tests/fixtures/workers.py)."""
    live_workers.stop("convert-worker")
    try:
        yield
    finally:
        purge_queues()  # messages a failed test left in flight must not reach the next test's workers


@pytest.fixture
def convert_workers(session_convert_worker_stopped, tmp_path):
    """`convert_workers()` starts a convert worker that leads its own process group, so the test can kill it with
    its pool children (kill_worker_group). Every worker of the test shares one TMPDIR, `convert_workers.tmpdir`, as
    pods on one node share /tmp: a new worker sweeps the work dirs a killed one left there."""
    started = []
    tmpdir = tmp_path / "worker-tmp"
    tmpdir.mkdir()

    def start(concurrency: int = 1, **extra_env):
        worker = start_worker(
            "convert-worker", tmp_path, start_new_session=True, TMPDIR=str(tmpdir),
            CONVERT_CONCURRENCY=str(concurrency), **extra_env,
        )
        started.append(worker)
        return worker

    start.tmpdir = tmpdir
    start.started = started
    yield start
    for worker in started:
        if worker.process.poll() is None:
            kill_worker_group(worker)


@pytest.fixture
def session_notify_worker_stopped(live_workers):
    """The session's notify worker stopped for this test (the next test that wants it running starts a fresh one)."""
    live_workers.stop("notify-worker")
    purge_queues()  # what earlier tests left in flight must not be counted as this test's messages
    try:
        yield
    finally:
        purge_queues()  # what a failed test left in flight must not reach the next test's workers
