"""A role's processes counted as one, end to end: web under gunicorn with two worker processes, started by its
entrypoint, and a real conversion by the session's convert worker, read from its metrics port."""

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.conversions.api.helpers import upload, wait_finished
from tests.fixtures.workers import ROOT, _test_database_url
from tests.metrics.helpers import samples, scrape, total, value
from tests.utils import free_port, terminate, wait_for

COUNT = "mp3converter_http_request_duration_seconds_count"
LIST_401 = {"method": "GET", "view": "conversion-list", "status": "401"}


def children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def served_by(folder: Path, pid: int) -> float:
    """The unauthenticated list requests one process counted, from its own file."""
    files = [str(path) for path in folder.glob(f"histogram_{pid}.db")]
    counted = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for metric in MultiProcessCollector.merge(files, accumulate=True) for sample in metric.samples
    }
    return value(counted, COUNT, **LIST_401)


@pytest.fixture
def web(transactional_db, settings, tmp_path):
    """docker/bin/web, as in production: gunicorn with two worker processes, on the test database."""
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "DATABASE_URL": _test_database_url(),
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": "2",
        "WEB_THREADS": "4",
        "METRICS_DIR": str(tmp_path / "metrics"),
    }
    log = (tmp_path / "web.log").open("wb")
    process = subprocess.Popen([str(ROOT / "docker" / "bin" / "web")], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up():
        assert process.poll() is None, (tmp_path / "web.log").read_text()[-3000:]
        return len(children(process.pid)) == 2 and scrape(f"{base}/healthz", None)[0] == 200

    try:
        wait_for(up, timeout=60, message="gunicorn and its two workers")
        yield process, base, tmp_path / "metrics" / "web"
    finally:
        terminate(process)
        log.close()


def test_a_scrape_of_either_gunicorn_worker_sums_both_and_keeps_a_killed_ones_counts(web, settings):
    process, base, folder = web
    workers = children(process.pid)
    sent = 0

    def request(_):
        status, _body = scrape(f"{base}/api/conversions/", None)
        assert status == 401

    # Requests until each worker process has served some: the kernel hands each connection to either.
    with ThreadPoolExecutor(8) as pool:
        def both_served():
            nonlocal sent
            list(pool.map(request, range(40)))
            sent += 40
            return all(served_by(folder, pid) > 0 for pid in workers)

        wait_for(both_served, timeout=60, interval=0, message="both gunicorn workers to serve requests")
    assert sum(served_by(folder, pid) for pid in workers) == sent

    def scraped() -> dict:
        status, text = scrape(f"{base}/metrics", settings.METRICS_TOKEN)
        assert status == 200, text
        return samples(text)

    # Whichever worker answers the scrape, it reads every worker's files: the same sum each time.
    for _ in range(6):
        assert value(scraped(), COUNT, **LIST_401) == sent

    # A worker killed: gunicorn's child_exit hook drops its live gauge's file; its counts stay in the sum.
    killed = sorted(workers)[0]
    assert (folder / f"gauge_livesum_{killed}.db").exists()
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: not (folder / f"gauge_livesum_{killed}.db").exists(), timeout=30,
             message="the killed worker's live gauge to be dropped")
    wait_for(lambda: len(children(process.pid) - {killed}) == 2, timeout=60, message="gunicorn to replace it")
    after = scraped()
    assert value(after, COUNT, **LIST_401) == sent
    # Nothing in flight: /metrics is answered before the timing starts, and the killed worker's requests went with it.
    assert total(after, "mp3converter_http_requests_in_flight") == 0


@pytest.mark.e2e
def test_a_real_conversion_moves_the_convert_workers_metrics(live_workers, api_client, media, settings):
    worker = live_workers["convert-worker"]
    assert scrape(worker.metrics_url, None)[0] == 401
    assert scrape(worker.metrics_url, "not-the-token")[0] == 401

    def scraped() -> dict:
        status, text = scrape(worker.metrics_url, settings.METRICS_TOKEN)
        assert status == 200, text
        return samples(text)

    before = scraped()
    response = upload(api_client, media("mp4_aac", duration=3.0))
    assert response.status_code == 202, response.content
    job = wait_finished(api_client, response.json()["id"])
    assert job["status"] == "done", job
    after = scraped()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    # Counted in a pool process, read from the main process's server.
    assert moved("mp3converter_conversions_finished_total", status="done", error_code="") == 1
    assert moved("mp3converter_conversion_duration_seconds_count") == 1
    assert 0 < moved("mp3converter_conversion_duration_seconds_sum") < 60
    assert moved("mp3converter_conversion_realtime_factor_count") == 1
    from conversions.models import Conversion

    conversion = Conversion.objects.get(pk=job["id"])
    assert moved("mp3converter_conversion_bytes_total", direction="in") == conversion.source_size
    assert moved("mp3converter_conversion_bytes_total", direction="out") == conversion.mp3_size
    # ... and its database statements, counted in the worker too.
    assert total(after, "mp3converter_db_query_duration_seconds_count") > \
        total(before, "mp3converter_db_query_duration_seconds_count")
