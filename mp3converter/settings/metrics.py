"""Metrics (mp3converter/metrics/): who may read them, and where the workers serve theirs."""

from django.core.exceptions import ImproperlyConfigured

from mp3converter.checks import key_weakness, weak_key_message

from .base import DEBUG
from .env import env

# The token Prometheus sends as `Authorization: Bearer <METRICS_TOKEN>` to web's /metrics and the workers' metrics
# port. Unset: the metrics are open while DEBUG is on (a local run) and off otherwise (404). With DEBUG off a
# placeholder or short token stops the service, as for the signing keys.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
if METRICS_TOKEN and not DEBUG and (_weakness := key_weakness(METRICS_TOKEN)):
    raise ImproperlyConfigured(weak_key_message("METRICS_TOKEN", _weakness))
# The port a worker's main process serves its metrics on (Kubernetes: 9808, scraped by the PodMonitor); 0 serves none.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
if not 0 <= WORKER_METRICS_PORT <= 65535:
    raise ImproperlyConfigured(f"WORKER_METRICS_PORT must be a port number (0: none), not {WORKER_METRICS_PORT}.")
