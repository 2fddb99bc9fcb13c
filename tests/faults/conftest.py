"""Fixtures for fault tests: convert workers a test may kill, instead of the session's shared one, and the session's
workers stopped for a test that must be alone with the broker."""

import pytest

from tests.faults.helpers import kill_worker_group
from tests.fixtures.workers import NOTIFY_WORKER_ENV, purge_queues, start_worker, stop_worker


@pytest.fixture
def session_convert_worker_stopped(live_workers):
    """Stop the session's convert worker for this test, so only the test's own workers take conversions; start a
    fresh one afterwards (in the same dict, so later tests find a live worker)."""
    session_worker = live_workers["convert-worker"]
    stop_worker(session_worker)
    try:
        yield
    finally:
        # Messages a failed test left in flight must not reach the next test's workers.
        purge_queues()
        live_workers["convert-worker"] = start_worker(
            "convert-worker", session_worker.ready_file.parent, TMPDIR=str(session_worker.tmpdir)
        )


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
    """Stop the session's notify worker for this test; start a fresh one afterwards (in the same dict, so later tests
    find a live worker)."""
    session_worker = live_workers["notify-worker"]
    stop_worker(session_worker)
    purge_queues()  # what earlier tests left in flight must not be counted as this test's messages
    try:
        yield
    finally:
        purge_queues()  # what a failed test left in flight must not reach the next test's workers
        live_workers["notify-worker"] = start_worker(
            "notify-worker", session_worker.ready_file.parent, TMPDIR=str(session_worker.tmpdir), **NOTIFY_WORKER_ENV
        )
