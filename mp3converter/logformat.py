"""Log lines for machines: with `LOG_FORMAT=json` every role writes one JSON object per line (settings/logs.py).

`JsonFormatter` formats a record as a flat object: the time (ISO 8601, UTC), level, logger, message and process, the
request, user and job ids when known (mp3converter/joblog.py), any other plain field the call added
(`extra={"status_code": 404}`), and the traceback of an exception. `GunicornLogger` is gunicorn's logger class
(docker/bin/web): it writes gunicorn's own lines and its access log in the same format.
"""

import json
import logging
import os
from datetime import UTC, datetime

from gunicorn import glogging

from .joblog import UNKNOWN

# Attributes every record has: not "extra" fields. Read off a real record, so a new Python's additions are known.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# The ids ContextFilter stamps, under the names a line shows them by.
_IDS = {"request_id": "request_id", "user_id": "user_id", "job": "job_id"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for attribute, field in _IDS.items():
            value = getattr(record, attribute, None)
            if value is not None and value != UNKNOWN:
                line[field] = str(value)
        for name, value in vars(record).items():
            # Plain values only: an object (Django's `request`, Celery's `data`) has no meaning to a log collector.
            if name not in _RECORD_ATTRIBUTES and name not in _IDS and name not in line and not name.startswith("_"):
                if value is None or isinstance(value, (str, int, float, bool)):
                    line[name] = value
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a line separator in a message (U+2028) must not split the line for a line-based reader.
        return json.dumps(line, default=str)


def log_format() -> str:
    """LOG_FORMAT, read from the settings (gunicorn's master process reads them before any worker loads Django)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mp3converter.settings")
    from django.conf import settings

    return settings.LOG_FORMAT


class GunicornLogger(glogging.Logger):
    """gunicorn's server lines and access log, in LOG_FORMAT: unchanged for text; JSON lines like the app's for json,
    where each request's line carries its method, path (the query string left out: it can hold a token), status,
    duration, size, client address and the request's and user's ids (mp3converter/requestid.py)."""

    def setup(self, cfg):
        super().setup(cfg)
        self.json = log_format() == "json"
        if self.json:
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter())

    def access(self, resp, req, environ, request_time):
        if not self.json:
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return
        from .requestid import ENVIRON_REQUEST_ID, ENVIRON_USER_ID

        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-")
        fields = {
            "method": method,
            "path": path,
            "status": int(status) if str(status).isdigit() else status,
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "bytes": getattr(resp, "sent", None),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "request_id": environ.get(ENVIRON_REQUEST_ID, UNKNOWN),
            "user_id": environ.get(ENVIRON_USER_ID, UNKNOWN),
        }
        try:
            self.access_log.info("%s %s %s", method, path, status, extra=fields)
        except Exception:
            self.exception("access log line failed")
