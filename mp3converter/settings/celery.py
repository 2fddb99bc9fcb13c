"""Celery settings (read by mp3converter/celery.py through the CELERY_ namespace).

Each setting says why; the references are sections of the Celery 5 docs ("Configuration and defaults", "Tasks").
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from .base import CONVERSION_HARD_TIME_LIMIT, CONVERSION_SOFT_TIME_LIMIT
from .env import VAR_DIR, env

# With no broker configured, a folder-based transport lets a laptop run every process without a server.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env.str("CELERY_BROKER_FOLDER", default=str(VAR_DIR / "broker")))
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    # kombu's filesystem transport with its races closed: messages written whole, exchange tables under one lock.
    CELERY_BROKER_TRANSPORT = "mp3converter.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # A worker looks for new messages this often (kombu's polling_interval, 1 s by default): a job waits half of
        # it on average before it starts. Each look lists the queue folder, which the event queues' housekeeping
        # (mp3converter/broker.py) keeps small, so ten looks a second cost a fraction of a percent of a core.
        "polling_interval": env.float("CELERY_BROKER_POLLING_INTERVAL", default=0.1),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Publisher confirms: apply_async returns only once RabbitMQ has taken the message ("broker_transport_options").
        "confirm_publish": True,
    }
# Retry the first connection instead of crashing a worker that starts before RabbitMQ (broker_connection_retry_on_startup).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The job row is the state; nobody reads Celery results (task_ignore_result).
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# JSON only: a pickle payload from a compromised producer could run code in the worker (task_serializer, accept_content).
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Ack after the task finishes so a worker killed mid-conversion hands the job back (task_acks_late).
CELERY_TASK_ACKS_LATE = True
# ...and a worker process that dies (OOM, kill -9) also requeues instead of acking (task_reject_on_worker_lost).
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Conversions are long: a worker reserves one message at a time so others can take the rest (worker_prefetch_multiplier).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Time limits stop a stuck ffmpeg; the soft one lets the task record "timeout" first (task_soft_time_limit).
CELERY_TASK_SOFT_TIME_LIMIT = CONVERSION_SOFT_TIME_LIMIT
CELERY_TASK_TIME_LIMIT = CONVERSION_HARD_TIME_LIMIT
# Task events feed Flower (worker_send_task_events, task_send_sent_event).
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# Unknown task names are an error, not a silent default queue (task_create_missing_queues).
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_DEFAULT_QUEUE = "convert"
# Durable queues declared up front, so publishing never depends on a worker having declared them first.
_exchange = Exchange("mp3converter", type="direct")
CELERY_TASK_QUEUES = (
    # URL imports download their source first, on a role of its own: the only one allowed out to the internet.
    Queue("fetch", _exchange, routing_key="fetch"),
    Queue("convert", _exchange, routing_key="convert"),
    Queue("notify", _exchange, routing_key="notify"),
    # Notifications: one queue per channel (notifications/channels/); the notify worker consumes them all.
    Queue("email", _exchange, routing_key="email"),
    Queue("webhook", _exchange, routing_key="webhook"),
    # Periodic upkeep (the retention sweep), consumed by the fetch role: always running (the convert role may be at
    # zero) and holding the file store's credentials (the notify role holds none).
    Queue("maintenance", _exchange, routing_key="maintenance"),
)
CELERY_TASK_DEFAULT_EXCHANGE = "mp3converter"
CELERY_TASK_DEFAULT_ROUTING_KEY = "convert"
# One queue per step, each served by its own worker deployment (task_routes).
CELERY_TASK_ROUTES = {
    "conversions.tasks.fetch_source_task": {"queue": "fetch"},
    "conversions.tasks.convert_video_task": {"queue": "convert"},
    # The chain's notify step (notifications/tasks.py; its name is older than that app).
    "conversions.tasks.notify_owner_task": {"queue": "notify"},
    "conversions.tasks.sweep_retention_task": {"queue": "maintenance"},
    # Deliveries go on their channel's queue (Channel.queue), given when each one is queued.
}
# Messages survive a broker restart (task_default_delivery_mode).
CELERY_TASK_DEFAULT_DELIVERY_MODE = "persistent"
# A worker restarts its pool child after this many tasks to bound memory growth (worker_max_tasks_per_child).
CELERY_WORKER_MAX_TASKS_PER_CHILD = env.int("CELERY_WORKER_MAX_TASKS_PER_CHILD", default=50)
# Workers log through Django's LOGGING, so their lines carry the job id too (worker_hijack_root_logger).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Readiness and liveness files for Kubernetes probes, kept by a worker bootstep (see mp3converter/celery.py).
CELERY_WORKER_READY_FILE = env.str("CELERY_WORKER_READY_FILE", default="")
CELERY_WORKER_HEARTBEAT_FILE = env.str("CELERY_WORKER_HEARTBEAT_FILE", default="")
# How often the heartbeat file is touched; well under WORKER_HEARTBEAT_MAX_AGE, which the liveness probe reads.
CELERY_WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=10)
if CELERY_WORKER_HEARTBEAT_SECONDS <= 0:
    raise ImproperlyConfigured(
        f"WORKER_HEARTBEAT_SECONDS must be more than 0, not {CELERY_WORKER_HEARTBEAT_SECONDS:g}."
    )

# --- The reconciler (conversions/services/reconcile.py, run by the convert worker: mp3converter/celery.py) ---------
# A processing job whose heartbeat is older than this lost its worker; a job queued this long while the broker holds
# fewer convert messages than there are queued jobs lost its message. Either is queued again.
STALE_JOB_SECONDS = env.int("STALE_JOB_SECONDS", default=120)
# How often each convert worker runs the reconciler (also once when it starts); 0 runs it only at the start.
RECONCILE_INTERVAL_SECONDS = env.float("RECONCILE_INTERVAL_SECONDS", default=60)
