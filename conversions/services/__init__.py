"""Writes for conversions, split by concern:

- `lifecycle`: create (probe, store, queue; or queue a URL import), enqueue, cancel, retry, mark failed, delete;
- `fetching`: a URL job's fetch step as the fetch worker runs it (download through the outbound guard, probe, store);
- `processing`: the conversion itself as the convert worker runs it (progress, heartbeat, the redelivery guard);
- `reconcile`: queue again the jobs whose worker or message was lost;
- `quotas`: the per-user limits and the email-verification gate that refuse an upload or a retry;
- `links`: signed download links that work with no sign-in, and revoking them;
- `resumable`: resumable (tus) uploads: create, append, finish into a conversion, terminate, sweep the expired;
- `idempotency`: an upload's Idempotency-Key: claim it, keep the answer a repeat gets, release it, sweep the expired.
- `retention`: how long files are kept: the sweep that removes sources and MP3s when they are due (jobs expire) and
  stored files no row needs.

Callers import from here. Telling the owner is the `notifications` app's part.
"""

from mp3converter.errors import QueueUnavailable, StorageUnavailable

from ..filenames import clean_filename
from ..workdirs import workdirs_sweep
from .lifecycle import (
    conversion_cancel,
    conversion_create,
    conversion_create_from_url,
    conversion_delete,
    conversion_enqueue,
    conversion_mark_failed,
    conversion_retry,
)
from .fetching import conversion_fetch
from .idempotency import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    StoredAnswer,
    idempotency_answer_store,
    idempotency_claim,
    idempotency_keys_sweep,
    idempotency_release,
)
from .links import (
    DownloadLink,
    LinkDeleted,
    LinkExpired,
    LinkInvalid,
    LinkReplaced,
    LinkRevoked,
    conversion_link_create,
    conversion_link_resolve,
    conversion_links_revoke,
)
from .processing import ProgressReporter, conversion_convert, conversion_heartbeat
from .quotas import NO_LIMITS, Limits, quota_limits, upload_check, upload_check_declared
from .reconcile import Reconciled, conversion_reconcile
from .retention import Swept, conversions_expire, retention_sweep, retention_sweep_due, stored_orphans_remove
from .resumable import (
    resumable_upload_append,
    resumable_upload_create,
    resumable_upload_delete,
    resumable_uploads_sweep,
)

# Callers of the single module this package replaced import these from here too.
__all__ = [
    "DownloadLink",
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "LinkDeleted",
    "LinkExpired",
    "LinkInvalid",
    "LinkReplaced",
    "LinkRevoked",
    "Limits",
    "NO_LIMITS",
    "ProgressReporter",
    "Reconciled",
    "Swept",
    "QueueUnavailable",
    "StorageUnavailable",
    "StoredAnswer",
    "clean_filename",
    "conversion_cancel",
    "conversion_convert",
    "conversion_create",
    "conversion_create_from_url",
    "conversion_fetch",
    "conversion_delete",
    "conversion_enqueue",
    "conversion_heartbeat",
    "conversion_link_create",
    "conversion_link_resolve",
    "conversion_links_revoke",
    "conversion_mark_failed",
    "conversion_reconcile",
    "conversion_retry",
    "conversions_expire",
    "idempotency_answer_store",
    "idempotency_claim",
    "idempotency_keys_sweep",
    "idempotency_release",
    "quota_limits",
    "resumable_upload_append",
    "resumable_upload_create",
    "resumable_upload_delete",
    "resumable_uploads_sweep",
    "retention_sweep",
    "retention_sweep_due",
    "stored_orphans_remove",
    "upload_check",
    "upload_check_declared",
    "workdirs_sweep",
]
