"""What one account may cost, and the gate before its first upload: the checks that refuse an upload (or a retry).

- Jobs queued, fetching or processing at once (`QUOTA_ACTIVE_JOBS`): 429 `rate_limited`. A retry makes a job active again, so
  an owner's retry is held to this limit too.
- Accepted uploads in any rolling hour (`QUOTA_UPLOADS_PER_HOUR`): 429 `rate_limited`, `Retry-After` = until the
  oldest upload that has to leave the window does. Counted from `UploadRecord`s, so deleting jobs does not reset it.
- Stored bytes, sources and MP3s together (`QUOTA_STORAGE_MB`): 413 `quota_exceeded`. An MP3 counts once it is
  written, so a finished job can take an account past its limit; the next upload is then refused.

Each limit is the user's own (`accounts.User.quota_*`, set in the admin) or, when that is empty, the setting. 0 allows
nothing (the account may not upload); a setting of `unlimited` sets no limit. Staff have no limits.

An upload is checked three times: from the request's `Content-Length` before its body is read (the APIs call
`upload_check_declared`), with its real size before the probe, and once more under a lock on the owner's row, right
before its row is inserted (`conversion_create`), so that concurrent uploads of one account cannot all pass on the
same count. A URL import is checked at POST with its size unknown, and its storage once more when the fetch step
has downloaded it (`storage_check`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from mp3converter.errors import EmailNotVerified, QuotaExceeded, RateLimited

from ..models import UploadRecord
from ..selectors import UPLOAD_WINDOW, Usage, conversion_usage, upload_times_last_hour

MB = 1024 * 1024
# A declared body is the file plus the multipart framing and the option fields: this much of it is not the file.
FORM_OVERHEAD_BYTES = 64 * 1024
# Nobody can know when a running job ends; a minute is a fair time to look again.
ACTIVE_JOBS_RETRY_AFTER = 60


@dataclass(frozen=True)
class Limits:
    """An account's limits; None is no limit."""

    active_jobs: int | None
    uploads_per_hour: int | None
    storage_mb: int | None

    @property
    def storage_bytes(self) -> int | None:
        return None if self.storage_mb is None else self.storage_mb * MB


NO_LIMITS = Limits(active_jobs=None, uploads_per_hour=None, storage_mb=None)


def quota_limits(*, user) -> Limits:
    """The user's limits: their own where the admin set one, else the settings' defaults; none for staff."""
    if user.is_staff:
        return NO_LIMITS

    def pick(own: int | None, default: int | None) -> int | None:
        return default if own is None else own

    return Limits(
        active_jobs=pick(user.quota_active_jobs, settings.QUOTA_ACTIVE_JOBS),
        uploads_per_hour=pick(user.quota_uploads_per_hour, settings.QUOTA_UPLOADS_PER_HOUR),
        storage_mb=pick(user.quota_storage_mb, settings.QUOTA_STORAGE_MB),
    )


def email_verified_check(*, user) -> None:
    """An account whose address is not confirmed may not upload (staff included; `createsuperuser` confirms)."""
    if getattr(settings, "REQUIRE_EMAIL_VERIFICATION", True) and not user.email_verified:
        raise EmailNotVerified()


def upload_check(*, user, size: int | None) -> None:
    """Refuse an upload of `size` bytes (None: not known yet) that this account may not make now."""
    email_verified_check(user=user)
    quota_check(user=user, size=size)


def upload_check_declared(*, user, content_length: str | int | None) -> None:
    """Refuse an upload from its request's headers, before its body is read: the gate, the job and upload limits,
    and the storage limit against the declared length less the form's framing."""
    try:
        declared = int(content_length) if content_length not in (None, "") else None
    except (TypeError, ValueError):
        declared = None  # a bad header is the request parser's to refuse
    upload_check(user=user, size=None if declared is None else max(declared - FORM_OVERHEAD_BYTES, 0))


def quota_check(*, user, size: int | None) -> None:
    limits = quota_limits(user=user)
    if limits == NO_LIMITS:
        return
    usage = conversion_usage(user=user)
    _check_active_jobs(limits, usage)
    _check_uploads_per_hour(user, limits, usage)
    if size is not None:
        _check_storage(limits, usage, size)


def storage_check(*, user, size: int) -> None:
    """A URL job's source, once fetched: its size was unknown at POST, so the storage limit is checked again."""
    limits = quota_limits(user=user)
    if limits.storage_bytes is not None:
        _check_storage(limits, conversion_usage(user=user), size)


def retry_check(*, user) -> None:
    """A retry makes a finished job active again: refuse it past the active-jobs limit."""
    limits = quota_limits(user=user)
    if limits.active_jobs is not None:
        _check_active_jobs(limits, conversion_usage(user=user))


def owner_lock(*, user) -> None:
    """Lock the owner's row until the transaction ends (SELECT … FOR UPDATE). Every check-then-insert of one account
    (an upload's row, a retry) takes it first, so they run one after another and each counts the others' jobs."""
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))


def upload_record_create(*, user) -> None:
    """Count one accepted upload, and prune the owner's records that have left the window."""
    now = timezone.now()
    UploadRecord.objects.filter(owner=user, created_at__lte=now - UPLOAD_WINDOW).delete()
    UploadRecord.objects.create(owner=user, created_at=now)


# --- the refusals ----------------------------------------------------------------------------------------------
def _check_active_jobs(limits: Limits, usage: Usage) -> None:
    limit = limits.active_jobs
    if limit is None or usage.active_jobs < limit:
        return
    if limit == 0:
        message = "Your account may not start conversions (its limit is 0 at once). Ask an administrator."
    elif usage.active_jobs == limit:
        message = (
            f"You already have {_count(limit, 'conversion')} queued or running, the most your account allows at "
            "once. Wait for one to finish."
        )
    else:
        message = (
            f"You already have {_count(usage.active_jobs, 'conversion')} queued or running, and your account allows "
            f"{limit} at once. Wait for some to finish."
        )
    raise RateLimited(message, retry_after=ACTIVE_JOBS_RETRY_AFTER)


def _check_uploads_per_hour(user, limits: Limits, usage: Usage) -> None:
    limit = limits.uploads_per_hour
    if limit is None or usage.uploads_last_hour < limit:
        return
    if limit == 0:
        raise RateLimited(
            "Your account may not upload files (its limit is 0 uploads per hour). Ask an administrator.",
            retry_after=int(UPLOAD_WINDOW.total_seconds()),
        )
    # Below the limit again once this many of the window's uploads have left it.
    times = upload_times_last_hour(user=user)
    leaving = len(times) - limit
    if 0 <= leaving < len(times):
        wait = (times[leaving] + UPLOAD_WINDOW - timezone.now()).total_seconds()
    else:
        wait = UPLOAD_WINDOW.total_seconds()
    retry_after = max(math.ceil(wait), 1)
    raise RateLimited(
        f"You have made {_count(len(times), 'upload')} in the last hour, and your account allows {limit} per hour. "
        f"Try again in {_duration(retry_after)}.",
        retry_after=retry_after,
    )


def _check_storage(limits: Limits, usage: Usage, size: int) -> None:
    limit = limits.storage_bytes
    if limit is None or usage.storage_bytes + size <= limit:
        return
    raise QuotaExceeded(
        f"This upload ({_size(size)}) would pass your storage limit of {limits.storage_mb} MB: you already store "
        f"{_size(usage.storage_bytes)}. Delete some conversions and try again."
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _duration(seconds: int) -> str:
    return _count(seconds, "second") if seconds < 90 else _count(math.ceil(seconds / 60), "minute")


def _size(size: int) -> str:
    if size >= 1000 * 1024:  # never "1024 KB"
        return f"{size / MB:.1f} MB"
    return f"{math.ceil(size / 1024)} KB" if size >= 1024 else _count(size, "byte")
