"""Logging, the same for every role (web, workers, manage.py): a level and a format, text for people or JSON lines
for a log collector. Every line carries the request, user and job it was logged for (mp3converter/joblog.py)."""

from django.core.exceptions import ImproperlyConfigured

from .env import env

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# text: key=value lines for people. json: one JSON object per line (mp3converter/logformat.py), gunicorn's access log
# included.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOG_FORMATTERS = {
    "text": {
        "format": "%(asctime)s level=%(levelname)s logger=%(name)s request=%(request_id)s user=%(user_id)s "
        "job=%(job)s pid=%(process)d %(message)s"
    },
    "json": {"()": "mp3converter.logformat.JsonFormatter"},
}
if LOG_FORMAT not in LOG_FORMATTERS:
    raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATTERS)}, not {LOG_FORMAT!r}.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "mp3converter.joblog.ContextFilter"}},
    "formatters": {LOG_FORMAT: LOG_FORMATTERS[LOG_FORMAT]},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Without Django's own handlers (a second console line in debug mode, mail to ADMINS, which is not set): its
        # lines go to the root's.
        "django": {"handlers": [], "level": "INFO"},
        # Loggers a Celery worker would otherwise give handlers of its own, in its own format
        # (worker_hijack_root_logger is off, settings/celery.py): they write through the console handler instead.
        **{name: {"handlers": ["console"], "propagate": False} for name in ("celery.task", "multiprocessing")},
    },
}
