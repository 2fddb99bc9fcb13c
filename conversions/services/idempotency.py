"""Idempotent uploads: the `Idempotency-Key` a client sends with `POST /api/conversions/`, the classic `POST /upload`
or a tus creation, kept per user (the HTTP side, the header and the requests' fingerprints, is
conversions/api/idempotency.py).

- The first request with a key claims it by inserting its row, unique per user and key. Of two requests with one key
  at once, one inserts; the other is answered 409 `idempotency_key_in_use` at once (nothing waits on a lock).
- Its answer, once it succeeded, is stored on the row. The same request with the key again gets that answer back
  (`StoredAnswer`), and nothing is done or stored; another request with the key is 422 `idempotency_key_reused`.
- A request that was refused releases its claim: every refusal keeps nothing, so sending it again is safe, and the
  key may then come with a corrected request.
- A claim whose request died without an answer (its process was killed) is taken over after CLAIM_STALE.
- A key expires IDEMPOTENCY_KEY_HOURS after it was first sent; the reconciler's runs remove it
  (`idempotency_keys_sweep`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from mp3converter.errors import ErrorCode, ServiceError

from ..models import IdempotencyKey
from ..selectors import idempotency_keys_expired_before

logger = logging.getLogger(__name__)

# A claim this old without an answer belongs to a request that died: the request's work after its body is in (a probe
# within PROBE_TIMEOUT, storing the source, the row) takes far less.
CLAIM_STALE = timedelta(minutes=10)
# Expired keys removed per sweep: a run stays short; the next one takes the rest.
SWEEP_BATCH = 1000
# Tries at claiming a key that other requests keep releasing or expiring under this one.
CLAIM_TRIES = 3


class IdempotencyKeyInUse(ServiceError):
    code = ErrorCode.IDEMPOTENCY_KEY_IN_USE
    message = "A request with this Idempotency-Key is still being handled. Send it again in a moment."
    retry_after = 5


class IdempotencyKeyReused(ServiceError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    message = (
        "This Idempotency-Key was already sent with a different request. Send the same request with it, or a new key "
        "with a new request."
    )


@dataclass(frozen=True)
class StoredAnswer:
    """An answer as a repeat gets it: the status, the headers that say where the job or the upload is, the body."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = ""
    body: bytes = b""


def idempotency_claim(*, owner, key: str, fingerprint: str) -> IdempotencyKey | StoredAnswer:
    """Claim `key` for a request whose fingerprint is `fingerprint`. Returns the claim, to be answered
    (`idempotency_answer_store`) or released (`idempotency_release`) by its request; or the stored answer when the same
    request was answered with this key before. Raises IdempotencyKeyReused when the key came with another request,
    IdempotencyKeyInUse while the request that claimed it is still at work."""
    key_hash = IdempotencyKey.hash_key(key)
    for _ in range(CLAIM_TRIES):
        now = timezone.now()
        try:
            with transaction.atomic():
                return IdempotencyKey.objects.create(
                    owner=owner, key=key, key_hash=key_hash, fingerprint=fingerprint, claimed_at=now, created_at=now
                )
        except IntegrityError:
            pass  # the user sent this key before: see what became of it
        record = IdempotencyKey.objects.filter(owner=owner, key_hash=key_hash).first()
        if record is None:
            continue  # released meanwhile
        if record.created_at <= idempotency_keys_expired_before(now):
            # Expired, not swept yet: the key is new again.
            IdempotencyKey.objects.filter(pk=record.pk, created_at=record.created_at).delete()
            continue
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        if record.is_answered:
            return StoredAnswer(
                status_code=record.status_code, headers=dict(record.headers), content_type=record.content_type,
                body=bytes(record.body),
            )
        if record.claimed_at > now - CLAIM_STALE:
            raise IdempotencyKeyInUse()
        # Its request died without an answer; this one takes the claim over (one taker, by the conditional update).
        if _claimed(record).update(claimed_at=now):
            logger.warning("idempotency key %s: its request died unanswered; claimed again", record.pk)
            record.claimed_at = now
            return record
    raise IdempotencyKeyInUse()


def _claimed(claim: IdempotencyKey):
    """The claim's row while this request still holds it: unanswered, and not taken over since."""
    return IdempotencyKey.objects.filter(pk=claim.pk, claimed_at=claim.claimed_at, status_code__isnull=True)


def idempotency_answer_store(*, claim: IdempotencyKey, answer: StoredAnswer) -> None:
    """Keep the answer of the request that holds `claim`: from now on the same request with the key gets it."""
    _claimed(claim).update(
        status_code=answer.status_code, headers=answer.headers, content_type=answer.content_type, body=answer.body
    )


def idempotency_release(*, claim: IdempotencyKey) -> None:
    """The request that holds `claim` was refused, or failed: the key is free again."""
    _claimed(claim).delete()


def idempotency_keys_sweep(*, now: datetime | None = None) -> int:
    """Remove keys older than IDEMPOTENCY_KEY_HOURS; returns how many."""
    expired = list(
        IdempotencyKey.objects.filter(created_at__lte=idempotency_keys_expired_before(now))
        .order_by("created_at").values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    if expired:
        IdempotencyKey.objects.filter(pk__in=expired).delete()
        logger.info("removed %d expired idempotency key(s)", len(expired))
    return len(expired)
