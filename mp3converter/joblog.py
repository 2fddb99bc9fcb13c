"""Log lines about a job carry its id (`job=<uuid>`), so one conversion's whole story can be found with one grep.

`job_context(job_id)` marks the code running for a job; `JobFilter` (installed on the console handler by the
settings) stamps every record logged meanwhile, from any module, including Celery's and ffmpeg-related ones.
"""

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

_current_job: contextvars.ContextVar[str] = contextvars.ContextVar("current_job", default="-")


@contextmanager
def job_context(job_id) -> Iterator[None]:
    token = _current_job.set(str(job_id))
    try:
        yield
    finally:
        _current_job.reset(token)


class JobFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job"):
            record.job = _current_job.get()
        return True
