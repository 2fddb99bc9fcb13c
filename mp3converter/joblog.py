"""Log lines carry the ids of what they are about: the web request (`request=<id>`), its user (`user=<id>`) and the
job (`job=<uuid>`), so one upload's whole story can be found with one grep, across the web process and the workers.

`job_context(job_id)` marks the code running for a job, `request_begin`/`request_end` a web request's
(mp3converter/requestid.py); `ContextFilter` (installed on the console handler by the settings) stamps every record
logged meanwhile, from any module, including Celery's and ffmpeg-related ones. The request and user ids travel with
the tasks a request queues, in the message's headers (`outgoing_headers`), and a worker restores them while it runs
the task (`task_begin`/`task_end`; the Celery signals in mp3converter/celery.py).
"""

import contextvars
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# What a line shows for an id nobody set.
UNKNOWN = "-"
# An id that is safe on a log line and in a header: short, no spaces, quotes or line breaks, never the UNKNOWN mark.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
SANE_USER_ID = re.compile(r"[0-9]{1,20}")
# The task message headers the ids travel in.
REQUEST_ID_HEADER = "log_request_id"
USER_ID_HEADER = "log_user_id"

_current_job: contextvars.ContextVar[str] = contextvars.ContextVar("current_job", default=UNKNOWN)
_current_request: contextvars.ContextVar[str] = contextvars.ContextVar("current_request", default=UNKNOWN)
# A user id, or a function that tells it: a web request learns its user after it started (the view authenticates).
_current_user: contextvars.ContextVar[str | Callable[[], str | None] | None] = contextvars.ContextVar(
    "current_user", default=None
)


@contextmanager
def job_context(job_id) -> Iterator[None]:
    token = _current_job.set(str(job_id))
    try:
        yield
    finally:
        _current_job.reset(token)


def request_begin(request_id: str, user: Callable[[], str | None]) -> None:
    """The code that follows serves one web request: `user` says its user's id once it is known (None until then)."""
    _current_request.set(request_id)
    _current_user.set(user)


def request_end() -> None:
    _current_request.set(UNKNOWN)
    _current_user.set(None)


def current_request_id() -> str:
    return _current_request.get()


def current_user_id() -> str:
    user = _current_user.get()
    user_id = user() if callable(user) else user
    return user_id or UNKNOWN


def outgoing_headers() -> dict[str, str]:
    """The ids a task queued now carries in its message's headers: those that are known."""
    ids = {REQUEST_ID_HEADER: current_request_id(), USER_ID_HEADER: current_user_id()}
    return {header: value for header, value in ids.items() if value != UNKNOWN}


def task_begin(headers) -> None:
    """A worker starts a task: its lines carry the ids the message brought. A header that is not a sane id (a forged
    or corrupt message) is ignored, so nothing a message says can break a log line."""
    request_id = headers.get(REQUEST_ID_HEADER)
    user_id = headers.get(USER_ID_HEADER)
    _current_request.set(request_id if _sane(SANE_REQUEST_ID, request_id) else UNKNOWN)
    _current_user.set(user_id if _sane(SANE_USER_ID, user_id) else None)


def task_end() -> None:
    request_end()


def is_sane_request_id(value) -> bool:
    return _sane(SANE_REQUEST_ID, value)


def _sane(pattern: re.Pattern, value) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


class ContextFilter(logging.Filter):
    """Stamps a record with the ids of the request, user and job it was logged for (`-` for none), unless the call
    gave its own (`extra={"job": ...}`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job"):
            record.job = _current_job.get()
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        if not hasattr(record, "user_id"):
            record.user_id = current_user_id()
        return True
