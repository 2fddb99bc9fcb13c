"""The image, checked without a Docker engine: the Dockerfile, the role entrypoints and .dockerignore as files, then
the entrypoints run for real the way a container runs them, with a read-only root filesystem.

The read-only runs use a private mount namespace (unshare, as root, like the rest of the suite): the root filesystem
and this checkout are remounted read-only and only one folder stays writable, standing in for the container's /tmp
(TMPDIR and the image's /tmp paths point there). A write anywhere else fails with EROFS, as it would in the pod.
"""

import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.deploy.readers import (
    APP_SERVICES,
    DOCKER,
    ROOT,
    apt_packages,
    compose,
    dockerfile_stages,
    logical_lines,
    image_env,
    image_path,
)
from tests.utils import wait_for

BIN = DOCKER / "bin"
ROLES = sorted(APP_SERVICES.values())
COMPILERS = {"build-essential", "gcc", "g++", "cpp", "clang", "make", "pkg-config", "python3-dev"}
READ_ONLY_ERRORS = ("Read-only file system", "Errno 30", "Failed to start control socket")


# --- The Dockerfile --------------------------------------------------------------------------------------------------
def test_dockerfile_is_multi_stage_on_slim_python_311():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert {stage.base for stage in stages} == {stages[0].base}
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", stages[0].base), stages[0].base


def test_final_stage_runs_as_a_numeric_non_root_user():
    users = dockerfile_stages()[-1].all("USER")
    assert users, "the final stage must name its user"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_final_stage_installs_no_compilers_and_no_system_ffmpeg():
    stages = dockerfile_stages()
    final = apt_packages(stages[-1])
    assert final, "the final stage installs its run-time libraries"
    assert final.isdisjoint(COMPILERS) and not any(package.endswith("-dev") for package in final), final
    assert COMPILERS & apt_packages(stages[0]), "mysqlclient is compiled in the build stage"
    # ffmpeg comes from the imageio-ffmpeg wheel, not from apt.
    assert not any("ffmpeg" in package for stage in stages for package in apt_packages(stage))
    assert re.search(r"^imageio-ffmpeg==", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    # ... and the build runs it as the image's user, so a binary that user cannot execute fails the build.
    keywords = [(keyword, "get_ffmpeg_exe" in arguments) for keyword, arguments in stages[-1].instructions]
    assert keywords.index(("USER", False)) < keywords.index(("RUN", True))


def test_final_stage_copies_only_built_artefacts():
    stages = dockerfile_stages()
    copies = stages[-1].all("COPY")
    assert copies and all(copy.startswith("--from=build ") for copy in copies), copies
    build_runs = " ".join(stages[0].all("RUN"))
    assert "pip install --no-deps -r /tmp/requirements.txt" in build_runs and "pip check" in build_runs
    assert "collectstatic" in build_runs


def test_image_keeps_its_run_time_files_under_tmp_and_writes_no_bytecode():
    env = image_env()
    assert env["CELERY_WORKER_HEARTBEAT_FILE"] == "/tmp/celery/heartbeat"
    assert env["CELERY_WORKER_READY_FILE"] == "/tmp/celery/ready"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # Static files are collected at build time into the STATIC_ROOT the containers use.
    collect = next(run for run in dockerfile_stages()[0].all("RUN") if "collectstatic" in run)
    assert f"STATIC_ROOT={env['STATIC_ROOT']}" in collect


def test_image_has_no_healthcheck_and_starts_through_an_init():
    final = dockerfile_stages()[-1]
    assert final.all("HEALTHCHECK") == []  # Compose and Kubernetes probe each role their own way
    assert json.loads(final.all("ENTRYPOINT")[-1])[0].endswith("/tini")
    assert json.loads(final.all("CMD")[-1]) == ["/app/docker/bin/web"]


# --- Entrypoints as files --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", sorted(path.name for path in BIN.iterdir()))
def test_every_script_is_executable_strict_posix_shell(script):
    path = BIN / script
    assert path.stat().st_mode & stat.S_IXUSR and path.stat().st_mode & stat.S_IXOTH, "executable by any user"
    assert path.read_text().startswith("#!/bin/sh\n")
    assert "set -eu" in logical_lines(path)
    syntax = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


@pytest.mark.parametrize("role", ROLES)
def test_role_entrypoints_end_by_exec_ing_their_process(role):
    # exec: the role's process replaces the shell, so it gets the container's signals and its exit status counts.
    assert logical_lines(BIN / role)[-1].startswith("exec ")


# --- .dockerignore ---------------------------------------------------------------------------------------------------
def dockerignore_excludes(relative_path: str) -> bool:
    """Docker's rule: the last matching pattern wins, and a pattern matching a folder covers what is inside it."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            pattern = re.escape(line.lstrip("!").strip("/"))
            pattern = pattern.replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
            rules.append((re.compile(pattern.replace(r"\?", "[^/]") + "$"), negated))
    parts = relative_path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for regex, negated in rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        (".env", True),
        ("docker/.env", True),
        ("docker/.env.local", True),
        ("k8s/production.env", True),
        (".git/config", True),
        (".venv/bin/python", True),
        ("var/db.sqlite3", True),
        ("var/secret_key", True),
        ("conversions/engine/__pycache__/run.cpython-311.pyc", True),
        ("docker/.env.example", False),
        ("manage.py", False),
        ("requirements.txt", False),
        ("mp3converter/settings/base.py", False),
        ("conversions/engine/run.py", False),
        ("notifications/services.py", False),
        ("docker/bin/web", False),
    ],
)
def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image(path, excluded):
    assert dockerignore_excludes(path) is excluded


def test_dockerignore_names_the_essentials():
    entries = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".git", ".venv", "var"} <= entries


# --- worker-health ---------------------------------------------------------------------------------------------------
def worker_health(kind: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    files = {
        "CELERY_WORKER_HEARTBEAT_FILE": str(tmp_path / "celery" / "heartbeat"),
        "CELERY_WORKER_READY_FILE": str(tmp_path / "celery" / "ready"),
    }
    return subprocess.run(
        [str(BIN / "worker-health"), kind], env={"PATH": os.environ["PATH"], **files, **env},
        capture_output=True, text=True,
    )


def test_worker_health_live_needs_a_fresh_heartbeat(tmp_path):
    heartbeat = tmp_path / "celery" / "heartbeat"
    assert worker_health("live", tmp_path).returncode == 1  # no heartbeat yet
    heartbeat.parent.mkdir()
    heartbeat.write_text("1")
    assert worker_health("live", tmp_path).returncode == 0
    subprocess.run(["touch", "-d", "2 minutes ago", str(heartbeat)], check=True)
    stale = worker_health("live", tmp_path)
    assert stale.returncode == 1
    assert "old" in stale.stderr
    assert worker_health("live", tmp_path, WORKER_HEARTBEAT_MAX_AGE="300").returncode == 0


def test_worker_health_ready_needs_the_ready_file(tmp_path):
    missing = worker_health("ready", tmp_path)
    assert missing.returncode == 1
    assert "not ready" in missing.stderr
    (tmp_path / "celery").mkdir()
    (tmp_path / "celery" / "ready").write_text("1")
    assert worker_health("ready", tmp_path).returncode == 0


def test_worker_health_refuses_unknown_checks(tmp_path):
    assert worker_health("", tmp_path).returncode == 64
    assert worker_health("alive", tmp_path).returncode == 64


# --- The roles, run with a read-only root filesystem -----------------------------------------------------------------
READ_ONLY_ROOT = (
    'set -e; writable=$1; checkout=$2; shift 2; '
    # The writable folder gets its own mount first, so remounting the rest read-only leaves it writable.
    'mount --bind "$writable" "$writable"; '
    'mount --bind "$checkout" "$checkout"; mount -o remount,bind,ro "$checkout"; '
    'mount -o remount,bind,ro /; '
    'exec "$@"'
)


def read_only(command: list[str], writable: Path) -> list[str]:
    namespace = ["unshare", "--mount", "--propagation", "private"]
    return [*namespace, "sh", "-c", READ_ONLY_ROOT, "sh", str(writable), str(ROOT), *command]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Runtime:
    """One container's worth of environment: the image's ENV, production settings, /tmp replaced by `writable`."""

    def __init__(self, writable: Path):
        self.writable = writable
        tmp = writable / "tmp"
        tmp.mkdir()
        self.env = {
            name: value.replace("/tmp/", f"{tmp}/", 1) if value.startswith("/tmp/") else value
            for name, value in image_env().items()
        }
        self.env.update({
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "HOME": "/nonexistent",  # as for the image's user: nothing may be written there
            "TMPDIR": str(tmp),
            "STATIC_ROOT": str(writable / "static"),
            # Explicit, because the checkout's .env (a developer's `make run`) would otherwise fill it in.
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": f"sqlite:///{writable / 'db.sqlite3'}",
            "MEDIA_ROOT": str(writable / "media"),
            # In-process broker: these runs must not take messages from the suite's RabbitMQ queues.
            "CELERY_BROKER_URL": "memory://",
            "FLOWER_BASIC_AUTH": f"admin:{secrets.token_urlsafe(12)}",
            "METRICS_TOKEN": secrets.token_urlsafe(50),
        })
        (writable / "media").mkdir()

    def run(self, command: list[str], **env) -> subprocess.CompletedProcess:
        return subprocess.run(
            read_only(command, self.writable), cwd=ROOT, env={**self.env, **env}, capture_output=True, text=True,
            timeout=240,
        )

    @contextmanager
    def start(self, role: str, log_name: str, **env):
        log_path = self.writable / f"{log_name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                read_only([str(BIN / role)], self.writable), cwd=ROOT, env={**self.env, **env},
                stdout=log, stderr=subprocess.STDOUT,
            )
        running = Running(process, log_path)
        try:
            yield running
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    def path(self, image_env_name: str) -> Path:
        return Path(self.env[image_env_name])


class Running:
    def __init__(self, process: subprocess.Popen, log_path: Path):
        self.process, self.log_path = process, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"exited with {self.process.returncode}:\n{self.log()[-3000:]}")
        return True

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def get(url: str, **headers) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError:
        return 0, ""


def compose_healthcheck(service: str, port: int | None = None) -> list[str]:
    """The Compose healthcheck command of a service, runnable here: /app paths and the published port adjusted."""
    test = compose()["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    command = [str(image_path(part)) if part.startswith("/app/") else part for part in test[1:]]
    if port is not None:
        command = [re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", part) for part in command]
    if command[0] == "python":
        command[0] = sys.executable
    return command


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Runtime:
    return Runtime(tmp_path_factory.mktemp("read-only-runtime"))


@pytest.fixture(scope="module")
def collected(runtime):
    """Static files collected the way the Dockerfile does, with its throwaway build-time values."""
    build_step = next(run for run in dockerfile_stages()[0].all("RUN") if "collectstatic" in run)
    assert all(part in build_step for part in ('DJANGO_SECRET_KEY="$(', "token_urlsafe(50)", "CELERY_BROKER_URL=memory://"))
    result = runtime.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50), CELERY_BROKER_URL="memory://",
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def migrated(runtime):
    return runtime.run([str(BIN / "migrate")])


def test_the_sandbox_is_read_only_but_for_its_writable_folder(runtime):
    probe = runtime.run(["sh", "-c", f'touch "{ROOT}/.read-only-probe"; touch "$TMPDIR/probe" && echo writable'])
    assert "Read-only file system" in probe.stderr
    assert probe.stdout.strip() == "writable"
    assert not (ROOT / ".read-only-probe").exists()


def test_static_files_collect_into_static_root_only(runtime, collected):
    manifest = json.loads((runtime.writable / "static" / "staticfiles.json").read_text())
    assert "admin/css/base.css" in manifest["paths"]


def test_migrate_builds_a_fresh_database_with_a_read_only_root(runtime, migrated):
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    with sqlite3.connect(runtime.writable / "db.sqlite3") as database:
        tables = {row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"accounts_user", "conversions_conversion", "django_migrations"} <= tables
    # Nothing left to apply: what wait-for-migrations waits for.
    check = runtime.run([sys.executable, "manage.py", "migrate", "--check", "--noinput"])
    assert check.returncode == 0, check.stdout + check.stderr


def test_web_serves_with_a_read_only_root(runtime, collected, migrated):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with runtime.start("web", "web", WEB_BIND=f"127.0.0.1:{port}", WEB_WORKERS="1", WEB_THREADS="2") as web:
        wait_for(lambda: web.alive() and get(f"{base}/healthz")[0] == 200, timeout=60, message="web to answer")
        status, body = get(f"{base}/readyz")
        assert (status, json.loads(body)["checks"]) == (200, {"database": "ok", "broker": "ok", "storage": "ok"})
        # A write to the database and a page with collected static files.
        form = urllib.parse.urlencode({"email": "reader@example.com", "password": secrets.token_urlsafe(16)}).encode()
        with urllib.request.urlopen(f"{base}/api/auth/register/", data=form, timeout=30) as response:
            assert response.status == 201
        status, page = get(f"{base}/admin/login/")
        assert status == 200
        stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', page).group(1)
        status, css = get(base + stylesheet)
        assert status == 200 and "font-family" in css
        healthcheck = subprocess.run(compose_healthcheck("web", port), capture_output=True, text=True, timeout=30)
        assert healthcheck.returncode == 0, healthcheck.stderr
        # /metrics: its gunicorn workers' files in the image's METRICS_DIR, on the writable /tmp.
        status, metrics = get(f"{base}/metrics", Authorization=f"Bearer {runtime.env['METRICS_TOKEN']}")
        assert status == 200 and 'view="register"' in metrics, metrics[-2000:]
        assert list((runtime.path("METRICS_DIR") / "web").glob("*.db"))
        assert web.stop() == 0
    log = web.log()
    assert not [error for error in READ_ONLY_ERRORS if error in log], log[-3000:]


@pytest.mark.parametrize(
    ("service", "role"), [("fetch", "fetch-worker"), ("convert", "convert-worker"), ("notify", "notify-worker")]
)
def test_workers_run_and_report_health_with_a_read_only_root(runtime, migrated, service, role):
    ready, heartbeat = runtime.path("CELERY_WORKER_READY_FILE"), runtime.path("CELERY_WORKER_HEARTBEAT_FILE")
    port = free_port()
    with runtime.start(role, role, WORKER_METRICS_PORT=str(port)) as worker:
        wait_for(lambda: worker.alive() and ready.exists(), timeout=60, message=f"{role} to be ready")
        assert heartbeat.exists()
        for kind in ("live", "ready"):
            probe = subprocess.run([str(BIN / "worker-health"), kind], env=runtime.env, capture_output=True, text=True)
            assert probe.returncode == 0, probe.stderr
        healthcheck = subprocess.run(compose_healthcheck(service), env=runtime.env, capture_output=True, text=True)
        assert healthcheck.returncode == 0, healthcheck.stderr
        # The worker's metrics port, behind the token.
        metrics = f"http://127.0.0.1:{port}/metrics"
        assert get(metrics)[0] == 401
        status, body = get(metrics, Authorization=f"Bearer {runtime.env['METRICS_TOKEN']}")
        assert status == 200 and "mp3converter_conversions_finished_total" in body
        # Warm shutdown: exits 0 and takes its probe files with it.
        assert worker.stop() == 0, worker.log()[-3000:]
    assert not ready.exists() and not heartbeat.exists()
    log = worker.log()
    assert not [error for error in READ_ONLY_ERRORS if error in log], log[-3000:]


def test_flower_serves_with_a_read_only_root(runtime):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with runtime.start("flower", "flower", FLOWER_ADDRESS="127.0.0.1", FLOWER_PORT=str(port)) as flower:
        wait_for(lambda: flower.alive() and get(f"{base}/healthcheck")[0] == 200, timeout=60, message="flower")
        assert get(f"{base}/healthcheck")[1] == "OK"
        assert get(f"{base}/")[0] == 401  # the dashboard itself needs the basic-auth credentials
        # Flower's own metrics stay as they were: Flower answers /metrics without its credentials (only a port-forward
        # reaches it on Kubernetes), in its own registry, untouched by the service's.
        status, metrics = get(f"{base}/metrics")
        assert status == 200 and "flower_events_total" in metrics and "mp3converter_" not in metrics
        healthcheck = subprocess.run(compose_healthcheck("flower", port), capture_output=True, text=True, timeout=30)
        assert healthcheck.returncode == 0, healthcheck.stderr
        flower.stop()
    log = flower.log()
    assert not [error for error in READ_ONLY_ERRORS if error in log], log[-3000:]
