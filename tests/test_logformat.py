"""mp3converter.logformat: with LOG_FORMAT=json each record is one flat JSON object on one line, and gunicorn's own
lines and access log, run for real through the web role's entrypoint, are JSON lines too."""

import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from mp3converter.joblog import ContextFilter, job_context, request_begin, request_end
from mp3converter.logformat import JsonFormatter
from tests.factories import UserFactory
from tests.fixtures.workers import _test_database_url
from tests.utils import free_port, terminate, wait_for

ROOT = Path(__file__).resolve().parent.parent


def formatted(message, *args, exc_info=None, **extra) -> str:
    record = logging.getLogger("mp3converter.test").makeRecord(
        "mp3converter.test", logging.WARNING, __file__, 1, message, args, exc_info, extra=extra or None
    )
    ContextFilter().filter(record)
    return JsonFormatter().format(record)


def test_a_line_is_one_json_object_with_time_level_logger_message_and_process():
    line = formatted("converted %d of %s", 3, "five")
    assert "\n" not in line
    body = json.loads(line)
    assert body == {
        "timestamp": body["timestamp"], "level": "WARNING", "logger": "mp3converter.test",
        "message": "converted 3 of five", "pid": os.getpid(),
    }  # no ids: none is known here
    assert body["timestamp"].endswith("Z")
    stamp = datetime.fromisoformat(body["timestamp"])  # ISO 8601, in UTC, to the millisecond
    assert stamp.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert len(body["timestamp"]) == len("2025-01-31T12:00:00.000Z")


def test_the_request_user_and_job_ids_appear_when_known():
    request_begin("req-9", user=lambda: "12")
    try:
        with job_context("4c1d"):
            body = json.loads(formatted("hello"))
    finally:
        request_end()
    assert (body["request_id"], body["user_id"], body["job_id"]) == ("req-9", "12", "4c1d")


def test_plain_extra_fields_are_kept_and_objects_left_out():
    body = json.loads(formatted("Not Found: %s", "/x", status_code=404, request=object(), ratio=0.5, done=True))
    assert (body["status_code"], body["ratio"], body["done"]) == (404, 0.5, True)
    assert "request" not in body


def test_a_line_break_or_a_forged_field_in_a_message_stays_inside_the_message():
    body = json.loads(formatted("name: %s", 'x"\n{"level": "ERROR"}\u2028'))
    assert body["message"] == 'name: x"\n{"level": "ERROR"}\u2028'
    assert body["level"] == "WARNING"
    assert len(formatted("name: %s", "x\u2028y").splitlines()) == 1


def test_an_exception_comes_with_its_traceback():
    try:
        raise ValueError("bad input")
    except ValueError:
        body = json.loads(formatted("failed", exc_info=sys.exc_info()))
    assert body["message"] == "failed"
    assert body["exception"].startswith("Traceback (most recent call last):")
    assert body["exception"].endswith("ValueError: bad input")


def get(url: str, **headers) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)
    except urllib.error.URLError:  # not listening yet
        return 0, {}


def test_gunicorn_writes_its_own_lines_and_the_access_log_as_json(transactional_db, tmp_path):
    user = UserFactory()
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "DATABASE_URL": _test_database_url(), "LOG_FORMAT": "json",
           "WEB_BIND": f"127.0.0.1:{port}", "WEB_WORKERS": "1", "WEB_THREADS": "2"}
    log_file = tmp_path / "web.log"
    with log_file.open("wb") as log:
        web = subprocess.Popen([str(ROOT / "docker" / "bin" / "web")], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    bearer = f"Bearer {AccessToken.for_user(user)}"
    missing = uuid.uuid4()
    try:
        wait_for(lambda: web.poll() is None and get(f"{base}/healthz")[0] == 200, timeout=60,
                 message="the web process to answer")
        status, headers = get(f"{base}/healthz", **{"X-Request-ID": "probe-1"})
        assert status == 200 and "X-Request-ID" not in headers  # a probe makes no id
        status, headers = get(f"{base}/api/schema/", **{"X-Request-ID": "anonymous-1"})
        assert (status, headers["X-Request-ID"]) == (200, "anonymous-1")
        status, headers = get(f"{base}/api/conversions/", Authorization=bearer, **{"X-Request-ID": "list-1"})
        assert (status, headers["X-Request-ID"]) == (200, "list-1")
        status, headers = get(f"{base}/api/conversions/{missing}/", Authorization=bearer)
        assert status == 404
        made_id = headers["X-Request-ID"]
    finally:
        terminate(web)

    lines = []
    for line in log_file.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    access = {line.get("request_id"): line for line in lines if line["logger"] == "gunicorn.access"}
    assert {
        key: access["list-1"].get(key) for key in ("method", "path", "status", "user_id", "remote_addr", "message")
    } == {
        "method": "GET", "path": "/api/conversions/", "status": 200, "user_id": str(user.pk),
        "remote_addr": "127.0.0.1", "message": "GET /api/conversions/ 200",
    }
    assert access["list-1"]["duration_ms"] >= 0 and access["list-1"]["bytes"] > 0
    [probe] = [line for line in access.values() if line["path"] == "/healthz" and line["status"] == 200][-1:]
    assert "request_id" not in probe and "user_id" not in probe
    assert (access["anonymous-1"]["path"], access["anonymous-1"]["status"]) == ("/api/schema/", 200)
    assert "user_id" not in access["anonymous-1"]  # nobody signed in
    assert (access[made_id]["status"], access[made_id]["user_id"]) == (404, str(user.pk))
    # Django's own line about the 404, in the worker, with the same ids.
    [not_found] = [line for line in lines if line["logger"] == "django.request"]
    assert (not_found["request_id"], not_found["user_id"], not_found["status_code"]) == (made_id, str(user.pk), 404)
