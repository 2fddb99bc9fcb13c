"""Every metric the service observes as it works, and the functions that observe them.

The metric objects live in the process that observes (a gunicorn worker, a Celery pool process); under the role
entrypoints prometheus_client's multiprocess mode writes each one to the role's folder, where a scrape sums them
(mp3converter/metrics/processes.py). Each function here is one place a caller reports something; none raises but for
a label value it does not know, which is the caller's bug.

What is read at scrape time instead (jobs by status, messages per queue) is in collectors.py.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mp3converter.errors import ErrorCode

PREFIX = "mp3converter"
# The service's own registry, not prometheus_client's default one: Flower, which loads the same Celery app, serves the
# default registry at its own /metrics, and keeps showing only its metrics there. (In multiprocess mode a scrape reads
# the processes' files, whatever the registry.)
registry = CollectorRegistry()

# --- Requests and queries (http.py, database.py) -----------------------------------------------------------------
# Seconds until the answer is handed to the server (a streamed download's body goes out after that).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
http_request_duration = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Requests by method, view (its URL name) and status: seconds until the answer.",
    ["method", "view", "status"],
    buckets=REQUEST_BUCKETS,
    registry=registry,
)
# livesum: the requests being served now by the processes alive now (a killed worker's are dropped with it).
http_requests_in_flight = Gauge(
    f"{PREFIX}_http_requests_in_flight", "Requests being served now.", multiprocess_mode="livesum", registry=registry
)
QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
db_query_duration = Histogram(
    f"{PREFIX}_db_query_duration_seconds",
    "Database statements by connection alias and vendor: seconds each took (its _count counts them).",
    ["alias", "vendor"],
    buckets=QUERY_BUCKETS,
    registry=registry,
)
db_errors = Counter(
    f"{PREFIX}_db_errors", "Database statements that raised, by alias, vendor and exception type.",
    ["alias", "vendor", "type"],
    registry=registry,
)
db_connections = Counter(
    f"{PREFIX}_db_connections", "Database connections opened, by alias and vendor.", ["alias", "vendor"],
    registry=registry,
)

# --- Conversions --------------------------------------------------------------------------------------------------
conversions_finished = Counter(
    f"{PREFIX}_conversions_finished",
    "Conversion attempts that ended, by status (done, failed, cancelled) and error code (empty when done).",
    ["status", "error_code"],
    registry=registry,
)
# Wall seconds from the convert worker's claim to done: copying the source in, ffmpeg, storing the MP3.
conversion_duration = Histogram(
    f"{PREFIX}_conversion_duration_seconds",
    "Conversions done: wall seconds from the worker's claim to done.",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
    registry=registry,
)
conversion_realtime_factor = Histogram(
    f"{PREFIX}_conversion_realtime_factor",
    "Conversions done: seconds of audio made per wall second.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
    registry=registry,
)
conversion_bytes = Counter(
    f"{PREFIX}_conversion_bytes",
    "Bytes of conversions done: their sources read (in) and the MP3s written (out).",
    ["direction"],
    registry=registry,
)
conversion_redeliveries = Counter(
    f"{PREFIX}_conversion_redeliveries",
    "A job's message came back because its worker died: handed back by the broker, or requeued by the reconciler.",
    ["by"],
    registry=registry,
)
storage_errors = Counter(
    f"{PREFIX}_storage_errors",
    "The file store (folder, GridFS, S3) failed a read or write: an upload answered 503, or a task's try retried.",
    registry=registry,
)

# --- Webhooks -----------------------------------------------------------------------------------------------------
# A delivery's try: answered with success (sent), failed and to be tried again (retry), or given up (failed). The same
# words as notifications.services.Outcome.
WEBHOOK_OUTCOMES = ("sent", "retry", "failed")
webhook_deliveries = Counter(
    f"{PREFIX}_webhook_deliveries", "Webhook delivery tries, by outcome: sent, retry, failed.", ["outcome"],
    registry=registry,
)

REDELIVERED_BY = ("broker", "reconciler")
# Series that exist from the start, at 0: a rate over them is 0 rather than absent until the first event.
for _outcome in WEBHOOK_OUTCOMES:
    webhook_deliveries.labels(_outcome)
for _by in REDELIVERED_BY:
    conversion_redeliveries.labels(_by)
for _direction in ("in", "out"):
    conversion_bytes.labels(_direction)
conversions_finished.labels("done", "")


def conversion_finished_observed(
    *, status: str, error_code: ErrorCode | str = "", seconds: float | None = None, audio_seconds: float = 0.0,
    bytes_in: int = 0, bytes_out: int = 0,
) -> None:
    """An attempt ended: done (with its wall `seconds`, the `audio_seconds` it made and its bytes), failed or
    cancelled (with its error code)."""
    conversions_finished.labels(status, str(error_code)).inc()
    if seconds is None:
        return
    conversion_duration.observe(seconds)
    if seconds > 0 and audio_seconds > 0:
        conversion_realtime_factor.observe(audio_seconds / seconds)
    conversion_bytes.labels("in").inc(max(bytes_in, 0))
    conversion_bytes.labels("out").inc(max(bytes_out, 0))


def redelivery_observed(*, by: str) -> None:
    """A job's message came back because its worker died: `broker` (RabbitMQ handed it back) or `reconciler`."""
    if by not in REDELIVERED_BY:
        raise ValueError(f"redelivered by {by!r}: one of {', '.join(REDELIVERED_BY)}")
    conversion_redeliveries.labels(by).inc()


def storage_error_observed() -> None:
    """The file store failed a read or write (the caller answers 503 or retries)."""
    storage_errors.inc()


def webhook_delivery_observed(outcome: str) -> None:
    """One webhook delivery try ended: `sent` (the receiver answered 2xx), `retry` (it failed and is tried again
    later) or `failed` (given up). Anything else is a bug in the caller: a ValueError, so no unbounded label."""
    if outcome not in WEBHOOK_OUTCOMES:
        raise ValueError(f"webhook outcome {outcome!r}: one of {', '.join(WEBHOOK_OUTCOMES)}")
    webhook_deliveries.labels(outcome).inc()
