"""The service as `make run` starts it, on temporary folders and free ports, for the bench to measure and tear down.

The roles are read from the Procfile, and each runs its line as honcho does: the line's `VAR=value` settings, then
its entrypoint (docker/bin/*); only the web role's address is moved to a free port. First the housekeeping `make run`
does (migrate, `python -m mp3converter.broker`). The defaults are `make run`'s (SQLite, the filesystem broker, the
local folder); a RabbitMQ or MariaDB URL runs the same roles on those instead.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
PASSWORD = secrets.token_urlsafe(16)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def procfile(path: Path = ROOT / "Procfile") -> dict[str, tuple[dict[str, str], str]]:
    """The Procfile's roles: name -> (the line's `VAR=value` settings, its entrypoint), in the file's order."""
    roles = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        words = command.split()
        settings = dict(word.split("=", 1) for word in words[:-1])
        roles[name.strip()] = (settings, words[-1])
    return roles


def is_worker(role: str) -> bool:
    return procfile()[role][1].endswith("-worker")


# What a developer's shell passes on to `make run`; the rest of the stack's environment is set below.
INHERITED = ("HOME", "LANG", "LC_ALL", "LOGNAME", "USER", "SHELL", "TERM", "TZ")


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"bench: gave up waiting for {what}")


@dataclass
class Stack:
    workdir: Path
    roles: tuple[str, ...] = tuple(procfile())  # web, convert, notify, flower
    broker_url: str = ""  # empty: the filesystem broker in workdir, as `make run`
    database_url: str = ""  # empty: SQLite in workdir, as `make run`
    convert_workers: int = 1  # convert worker processes (one ffmpeg each)
    settings: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    workers: list[str] = field(default_factory=list)  # names of the worker processes among them

    def __post_init__(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.web_port, self.flower_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.broker_folder = self.workdir / "broker"
        self.env = {
            **{name: os.environ[name] for name in INHERITED if name in os.environ},
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "DJANGO_SETTINGS_MODULE": "mp3converter.settings",
            "DJANGO_DEBUG": "true",  # as `make run`'s .env
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": self.database_url or f"sqlite:///{self.workdir / 'db.sqlite3'}",
            "CELERY_BROKER_URL": self.broker_url or "filesystem://localhost/",
            "CELERY_BROKER_FOLDER": str(self.broker_folder),
            "MEDIA_ROOT": str(self.workdir / "media"),
            "STATIC_ROOT": str(self.workdir / "static"),
            "EMAIL_FILE_PATH": str(self.workdir / "mail"),
            "TMPDIR": str(self.workdir / "tmp"),
            "REQUIRE_EMAIL_VERIFICATION": "false",
            "QUOTA_ACTIVE_JOBS": "unlimited",
            "QUOTA_UPLOADS_PER_HOUR": "unlimited",
            "QUOTA_STORAGE_MB": "unlimited",
            "LOG_LEVEL": "WARNING",
            "WEB_BIND": f"127.0.0.1:{self.web_port}",
            "FLOWER_PORT": str(self.flower_port),
            "FLOWER_BASIC_AUTH": f"bench:{PASSWORD}",
            **self.settings,
        }
        (self.workdir / "tmp").mkdir(exist_ok=True)

    # --- start and stop -------------------------------------------------------------------------------------------
    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def start(self) -> Stack:
        self.manage("migrate", "--noinput")
        subprocess.run([sys.executable, "-m", "mp3converter.broker"], cwd=ROOT, env=self.env, check=True)
        if self.broker_url:
            self._purge_queues()
        for role in self.roles:
            copies = self.convert_workers if role == "convert" else 1
            for copy in range(copies):
                self._start_role(role, f"{role}-{copy}" if copies > 1 else role)
        try:
            self.wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def _start_role(self, role: str, name: str) -> None:
        settings, entrypoint = procfile()[role]
        # The Procfile's settings, on a free port; what the bench sets on purpose (`settings`) wins.
        env = {**self.env, **settings, **self.settings, "WEB_BIND": self.env["WEB_BIND"]}
        if is_worker(role):
            self.workers.append(name)
            env["CELERY_WORKER_READY_FILE"] = str(self.workdir / f"{name}.ready")
            env["CELERY_WORKER_HOSTNAME"] = f"{name}@%h"
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [str(ROOT / entrypoint)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"bench: {name} exited:\n{self.log(name)[-2000:]}")
            workers = all((self.workdir / f"{name}.ready").exists() for name in self.workers)
            return workers and self._answers("/healthz") and ("flower" not in self.processes or self._flower_up())

        wait_until(ready, timeout=timeout, what="the stack to start", interval=0.2)

    def stop(self) -> None:
        # SIGTERM to each role's own process, as a process manager stops it; it stops its children (gunicorn's
        # workers, Celery's pool). Signalling the children too made a worker's pool exit under it, and the worker
        # then hung in its warm shutdown.
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        self.workers.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _purge_queues(self) -> None:
        script = (
            "from mp3converter.celery import app\n"
            "with app.connection_for_write() as c:\n"
            "    for q in app.amqp.queues.values():\n"
            "        q(c.default_channel).declare(); q(c.default_channel).purge()\n"
        )
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=self.env, check=True)

    # --- talking to it --------------------------------------------------------------------------------------------
    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=2) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _flower_up(self) -> bool:
        return self.flower_json("/api/workers") is not None

    def flower_json(self, path: str):
        request = urllib.request.Request(f"http://127.0.0.1:{self.flower_port}{path}")
        request.add_header("Authorization", "Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return json.loads(answer.read())
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def token(self) -> str:
        """An access token for a fresh account, made over the API as a user would."""
        email = f"bench-{secrets.token_hex(4)}@example.com"
        password = secrets.token_urlsafe(16)
        self._post_json("/api/auth/register/", {"email": email, "password": password})
        return self._post_json("/api/auth/token/", {"email": email, "password": password})["access"]

    def _post_json(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"{}")

    def pids(self, role: str) -> list[int]:
        """The processes of a role: the entrypoint's own and, for gunicorn, its workers."""
        from .procstat import tree

        return sorted(pid for name, process in self.processes.items() if name.startswith(role)
                      for pid in tree(process.pid))

    def broker_files(self) -> int:
        if not self.broker_folder.exists():
            return 0
        return sum(len(names) for _, _, names in os.walk(self.broker_folder))

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def broker_messages(self) -> int:
        folder = self.broker_folder / "queue"
        return len(os.listdir(folder)) if folder.exists() else 0
