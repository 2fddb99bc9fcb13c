"""Signed download links: a URL that serves a done job's MP3 to whoever holds it, with no sign-in, for a while.

A link is `/links/<token>/`. The token is the job's id, its attempt, its links generation and an expiry, signed
with the secret key (`django.core.signing`, a salt of its own), so nothing about a link is stored. It stops working:

- after `DOWNLOAD_LINK_DAYS` (`link_expired`);
- when the owner revokes the job's links, which bumps `Conversion.links_generation` (`link_revoked`);
- when the job is converted again, a new attempt with a new MP3, or is no longer done (`link_replaced`);
- when the job is deleted (`link_deleted`);
- when the job expires, its MP3 removed after OUTPUT_RETENTION_DAYS (`conversion_expired`).

A token that does not verify is `link_invalid`. Tokens are never logged here: they are credentials.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core import signing
from django.db.models import F
from django.urls import reverse
from django.utils.timezone import now

from mp3converter.errors import ConversionExpired, ErrorCode, InvalidState, ServiceError

from ..models import Conversion

logger = logging.getLogger(__name__)

SALT = "conversions.download-link"


class LinkInvalid(ServiceError):
    code = ErrorCode.LINK_INVALID
    message = (
        "This download link is damaged or was not made by this service. Copy the whole link from the email, or ask "
        "for a new one."
    )


class LinkExpired(ServiceError):
    code = ErrorCode.LINK_EXPIRED
    message = (
        "This download link has expired: links work for a limited time. The owner of the conversion can make a new "
        "one."
    )


class LinkRevoked(ServiceError):
    code = ErrorCode.LINK_REVOKED
    message = "The owner of this conversion withdrew its download links. Ask them for a new one."


class LinkReplaced(ServiceError):
    code = ErrorCode.LINK_REPLACED
    message = (
        "This conversion was run again since this link was made, so the link no longer points at its current MP3. "
        "Use the link in the newest email."
    )


class LinkDeleted(ServiceError):
    code = ErrorCode.LINK_DELETED
    message = "This download link is for a conversion that was deleted, together with its MP3."


class DownloadLink(NamedTuple):
    url: str  # absolute, on PUBLIC_BASE_URL
    expires_at: datetime


class _Claims(NamedTuple):
    conversion_id: uuid.UUID
    attempt: int
    generation: int
    expires_at: datetime


def conversion_link_create(*, conversion: Conversion) -> DownloadLink:
    """A signed link to the done job's MP3, working for DOWNLOAD_LINK_DAYS; InvalidState (409) for a job not done.

    The job's attempt and links generation are read from the database, not from `conversion`, so a link is never
    born dead from a stale row.
    """
    row = Conversion.objects.filter(pk=conversion.pk).values("status", "attempt", "links_generation").first()
    status = row["status"] if row else "deleted"
    if status == Conversion.Status.EXPIRED:
        raise ConversionExpired()
    if status != Conversion.Status.DONE:
        raise InvalidState(f"Only a done conversion has an MP3 to share; this one is {status}.")
    expires_at = now().astimezone(UTC).replace(microsecond=0) + timedelta(days=settings.DOWNLOAD_LINK_DAYS)
    token = signing.dumps(
        {"c": conversion.pk.hex, "a": row["attempt"], "g": row["links_generation"], "e": int(expires_at.timestamp())},
        salt=SALT,
        compress=True,
    )
    url = f"{settings.PUBLIC_BASE_URL}{reverse('conversion-link-download', args=[token])}"
    return DownloadLink(url=url, expires_at=expires_at)


def conversion_links_revoke(*, conversion: Conversion) -> None:
    """Every link made for the job so far stops working (`link_revoked`); links made afterwards work."""
    Conversion.objects.filter(pk=conversion.pk).update(links_generation=F("links_generation") + 1)
    logger.info("conversion %s: download links revoked", conversion.pk)


def conversion_link_resolve(*, token: str) -> Conversion:
    """The job a link serves, or the reason it does not: LinkInvalid (403); LinkDeleted, ConversionExpired,
    LinkRevoked, LinkReplaced or LinkExpired (410), checked in that order, so what a new link could not fix is told
    first."""
    claims = _claims(token)
    conversion = Conversion.objects.filter(pk=claims.conversion_id).first()
    if conversion is None:
        raise LinkDeleted()
    if conversion.status == Conversion.Status.EXPIRED:
        raise ConversionExpired()
    if conversion.links_generation != claims.generation:
        raise LinkRevoked()
    if conversion.attempt != claims.attempt or conversion.status != Conversion.Status.DONE:
        raise LinkReplaced()
    if now() >= claims.expires_at:
        raise LinkExpired()
    return conversion


def _claims(token: str) -> _Claims:
    try:
        claims = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise LinkInvalid() from None
    # Signed by this service, so well-formed; checked anyway, as a token is input.
    if not isinstance(claims, dict) or not isinstance(claims.get("c"), str):
        raise LinkInvalid()
    if not all(_is_int(claims.get(key)) for key in ("a", "g", "e")):
        raise LinkInvalid()
    try:
        conversion_id = uuid.UUID(hex=claims["c"])
        expires_at = datetime.fromtimestamp(claims["e"], tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise LinkInvalid() from None
    return _Claims(conversion_id, claims["a"], claims["g"], expires_at)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
