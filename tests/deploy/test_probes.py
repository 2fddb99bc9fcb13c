"""The commands the manifests give the kubelet, run for real: worker probes against a live worker, and the init step
that holds pods back until the schema is migrated."""

import os
import secrets
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.fixtures.workers import start_worker, stop_worker
from tests.deploy.manifests import ROOT, find, kustomize_build, repo_command
from tests.utils import wait_for


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=ROOT, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, check=False,
    )


@pytest.fixture(scope="module")
def notify_probes() -> dict[str, list[str]]:
    container = find(kustomize_build(), "Deployment", "notify-worker")["spec"]["template"]["spec"]["containers"][0]
    return {kind: repo_command(container[kind]["exec"]["command"]) for kind in ("startupProbe", "livenessProbe", "readinessProbe")}


@pytest.fixture
def worker(django_db_setup, django_db_blocker, smtp_server, tmp_path):
    heartbeat = tmp_path / "celery" / "heartbeat"
    with django_db_blocker.unblock():
        # Its own node name: the suite's notify worker may be running on this host too (one pod per node name).
        process = start_worker(
            "notify-worker", tmp_path, CELERY_WORKER_HEARTBEAT_FILE=str(heartbeat), WORKER_HEARTBEAT_SECONDS="1",
            CELERY_WORKER_HOSTNAME=f"notify-probe-{uuid.uuid4().hex[:8]}@%h",
        )
    files = {"CELERY_WORKER_HEARTBEAT_FILE": str(heartbeat), "CELERY_WORKER_READY_FILE": str(process.ready_file)}
    yield process, files
    if process.process.poll() is None:
        os.kill(process.process.pid, signal.SIGCONT)  # a test may have frozen it
        stop_worker(process)


def test_worker_probes_pass_while_it_runs_and_fail_once_it_stops(worker, notify_probes):
    process, files = worker
    for kind, command in notify_probes.items():
        result = run(command, files)
        assert result.returncode == 0, f"{kind}: {result.stderr}"

    # The bootstep keeps beating: the heartbeat's modification time moves on by itself.
    heartbeat = Path(files["CELERY_WORKER_HEARTBEAT_FILE"])
    first = heartbeat.stat().st_mtime
    wait_for(lambda: heartbeat.stat().st_mtime > first, timeout=30, message="the next heartbeat")

    stop_worker(process)
    assert process.process.returncode == 0, process.log()[-2000:]
    for kind, command in notify_probes.items():
        result = run(command, files)
        assert result.returncode == 1, kind
        assert result.stderr.strip(), f"{kind} says why it failed"


def test_liveness_fails_when_the_worker_hangs(worker, notify_probes):
    """A frozen worker process (here SIGSTOP) stops beating; liveness notices once the heartbeat is older than allowed."""
    process, files = worker
    os.kill(process.process.pid, signal.SIGSTOP)
    # 3 s: above this worker's beat of 1 s, so the test waits little; the pods beat every 10 s and allow 60 s.
    strict = {**files, "WORKER_HEARTBEAT_MAX_AGE": "3"}
    failed = wait_for(
        lambda: run(notify_probes["livenessProbe"], strict).returncode == 1, timeout=40, interval=1,
        message="liveness to fail on a frozen worker",
    )
    assert failed
    # Readiness says nothing about hangs (the ready file is still there); liveness is the probe that restarts the pod.
    assert run(notify_probes["readinessProbe"], files).returncode == 0


@pytest.fixture(scope="module")
def wait_command() -> list[str]:
    init = find(kustomize_build(), "Deployment", "web")["spec"]["template"]["spec"]["initContainers"][0]
    return repo_command(init["args"])


def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
    }


def test_init_step_waits_for_migrations_then_lets_the_pod_start(tmp_path, wait_command):
    env = sqlite_env(tmp_path)
    behind = run(wait_command, {**env, "MIGRATIONS_WAIT_TIMEOUT": "1", "MIGRATIONS_WAIT_INTERVAL": "1"})
    assert behind.returncode == 1
    assert "still behind" in behind.stderr

    migrated = run([str(ROOT / "docker" / "bin" / "migrate")], env)
    assert migrated.returncode == 0, migrated.stderr
    ready = run(wait_command, {**env, "MIGRATIONS_WAIT_TIMEOUT": "30"})
    assert ready.returncode == 0, ready.stderr
    assert ready.stderr == ""
