"""Logging, the same for every role (web, workers, manage.py): key=value lines, each carrying the request, user and
job it was logged for (mp3converter/joblog.py)."""

from .env import env

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "mp3converter.joblog.ContextFilter"}},
    "formatters": {
        "text": {
            "format": "%(asctime)s level=%(levelname)s logger=%(name)s request=%(request_id)s user=%(user_id)s "
            "job=%(job)s pid=%(process)d %(message)s"
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "text", "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
