"""Writes for conversions, split by concern:

- `lifecycle`: create (probe, store, queue), enqueue, cancel, retry, mark failed, delete;
- `processing`: the conversion itself as the convert worker runs it (progress, the redelivery guard).

Callers import from here. Telling the owner is the `notifications` app's part.
"""

from mp3converter.errors import QueueUnavailable, StorageUnavailable

from ..filenames import clean_filename
from ..workdirs import workdirs_sweep
from .lifecycle import (
    conversion_cancel,
    conversion_create,
    conversion_delete,
    conversion_enqueue,
    conversion_mark_failed,
    conversion_retry,
)
from .processing import ProgressReporter, conversion_convert

# Callers of the single module this package replaced import these from here too.
__all__ = [
    "ProgressReporter",
    "QueueUnavailable",
    "StorageUnavailable",
    "clean_filename",
    "conversion_cancel",
    "conversion_convert",
    "conversion_create",
    "conversion_delete",
    "conversion_enqueue",
    "conversion_mark_failed",
    "conversion_retry",
    "workdirs_sweep",
]
