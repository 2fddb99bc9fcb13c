"""Serving the metrics in Prometheus' text format: web's `/metrics`, and each worker's metrics port (a small HTTP server
in the worker's main process, WORKER_METRICS_PORT).

Both follow one rule (`access`): with METRICS_TOKEN set, only `Authorization: Bearer <METRICS_TOKEN>` reads them,
compared in constant time (401 otherwise); with it unset they are open while DEBUG is on (`make run`) and off
otherwise (404), so a production deployment has no metrics until its operator gives them a token.

A scrape sums the metrics of every process of the role (prometheus_client's multiprocess mode, set up by the role's
entrypoint: mp3converter/metrics/processes.py); web's adds what is read at scrape time (collectors.py).
"""

from __future__ import annotations

import hmac
import logging
import threading
from http import HTTPStatus
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest, multiprocess

from mp3converter.errors import NotAuthenticated

from . import instruments
from .collectors import ConversionsCollector, QueueCollector
from .processes import multiprocess_dir

logger = logging.getLogger(__name__)

PATH = "/metrics"
CHALLENGE = 'Bearer realm="metrics"'


class MetricsTokenRequired(NotAuthenticated):
    message = "Reading the metrics needs the metrics token: send Authorization: Bearer <METRICS_TOKEN>."


def access(authorization: str | None) -> HTTPStatus:
    """Whether a request with this Authorization header may read the metrics: 200, 401 (no or another token) or 404
    (metrics are off: no token is set and DEBUG is off)."""
    from django.conf import settings

    token = settings.METRICS_TOKEN
    if not token:
        return HTTPStatus.OK if settings.DEBUG else HTTPStatus.NOT_FOUND
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return HTTPStatus.OK
    return HTTPStatus.UNAUTHORIZED


class _ThisProcess:
    """A process outside multiprocess mode (`runserver`, the test suite) serves what it counted itself."""

    def collect(self):
        return instruments.registry.collect()


def registry(*, scrape_time: bool) -> CollectorRegistry:
    """What one scrape reads: every process of the role, plus (`scrape_time`, web) the database and broker reads."""
    scraped = CollectorRegistry()
    if (folder := multiprocess_dir()) is not None:
        multiprocess.MultiProcessCollector(scraped, path=folder)
    else:
        scraped.register(_ThisProcess())
    if scrape_time:
        scraped.register(ConversionsCollector())
        scraped.register(QueueCollector())
    return scraped


def scrape_answer(authorization: str | None, *, scrape_time: bool) -> tuple[HTTPStatus, dict[str, str], bytes]:
    """The answer to a scrape: status, headers, body."""
    status = access(authorization)
    if status == HTTPStatus.OK:
        # The text format every Prometheus reads (what prometheus_client's own handlers answer a plain scrape with).
        headers = {"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        return status, headers, generate_latest(registry(scrape_time=scrape_time))
    if status == HTTPStatus.UNAUTHORIZED:
        error = MetricsTokenRequired()
        headers = {"Content-Type": "text/plain; charset=utf-8", "WWW-Authenticate": CHALLENGE}
        return error.status, headers, f"{error.message}\n".encode()
    return status, {"Content-Type": "text/plain; charset=utf-8"}, b"Not Found\n"


def metrics_response(request):
    """Web's `/metrics` (answered by mp3converter/metrics/http.py's middleware, before host validation)."""
    from django.http import HttpResponse

    status, headers, body = scrape_answer(request.headers.get("Authorization"), scrape_time=True)
    response = HttpResponse(body, status=status, headers=headers)
    response["Cache-Control"] = "no-store"
    return response


# --- The workers' metrics port ------------------------------------------------------------------------------------
def worker_app(environ, start_response):
    """The WSGI app of a worker's metrics server: `/metrics` only."""
    if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not Found\n"]
    status, headers, body = scrape_answer(environ.get("HTTP_AUTHORIZATION"), scrape_time=False)
    start_response(f"{status.value} {status.phrase}", list(headers.items()))
    return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # a scrape every 30 s is no news


def worker_metrics_serve(*, port: int, host: str = "") -> WSGIServer:
    """Serve the worker's metrics on `port` from a daemon thread of this process; `shutdown()` stops it."""
    server = make_server(host, port, worker_app, server_class=_Server, handler_class=_QuietHandler)
    # Polled every 0.1 s for a shutdown: a stopping worker waits that long at most (0.5 s by default).
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-server",
                     daemon=True).start()
    logger.info("metrics: serving this worker's metrics on port %d", server.server_port)
    return server
