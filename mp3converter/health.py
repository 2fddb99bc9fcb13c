"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: database, broker and storage reachable)."""

import os

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache


def healthz(request):
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker() -> None:
    from mp3converter.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=3)


def _storage() -> None:
    ping = getattr(default_storage, "ping", None)
    if ping is not None:
        if not ping():
            raise ConnectionError("storage did not answer")
        return
    if not os.access(settings.MEDIA_ROOT, os.W_OK):
        raise PermissionError(f"{settings.MEDIA_ROOT} is not writable")


CHECKS = {"database": _database, "broker": _broker, "storage": _storage}


@never_cache
def readyz(request):
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", and says which
            results[name] = f"unavailable: {type(exc).__name__}"
    ready = all(value == "ok" for value in results.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503)


PROBES = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    """Answers the probes before host validation and the HTTPS redirect.

    Kubernetes' kubelet calls `http://<pod IP>:8000/healthz`: that Host header is not in ALLOWED_HOSTS (which names the
    public host), and the request is plain HTTP. Both are right for every other path, so the probe paths are answered
    here, ahead of every middleware that checks (only the request id's comes first), and nothing else is exempted.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe(request)
        return self.get_response(request)
