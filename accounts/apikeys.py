"""Personal API keys: what a key looks like, what the database keeps of it, and why one is refused.

A key reads `mp3k_<lookup>_<secret>`. The lookup (12 hex digits) finds its row; the secret (256 random bits,
43 URL-safe characters) proves the holder. The database keeps the lookup and the SHA-256 hash of the secret, never
the secret itself: the key is shown once, when it is made. A plain hash is enough here, unlike for passwords: the
secret is random, so there is nothing to guess from its hash, and checking it costs one hash per request.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from mp3converter.errors import ErrorCode, ServiceError

PREFIX = "mp3k_"
LOOKUP_LENGTH = 12
SECRET_BYTES = 32
SECRET_LENGTH = 43  # token_urlsafe(32): 32 bytes in unpadded base64
SEPARATOR = "_"
HEX_DIGITS = frozenset("0123456789abcdef")
# Compared against when no row has the lookup, so an unknown key costs the same comparison as a wrong secret.
NO_HASH = "0" * 64


@dataclass(frozen=True)
class NewKey:
    key: str  # shown to its owner once, never stored
    lookup: str
    secret_hash: str


def is_api_key(credential: str) -> bool:
    """True when a Bearer credential is meant as an API key (rather than a JWT): it starts with `mp3k_`."""
    return credential.startswith(PREFIX)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_make() -> NewKey:
    lookup = secrets.token_hex(LOOKUP_LENGTH // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return NewKey(key=f"{PREFIX}{lookup}{SEPARATOR}{secret}", lookup=lookup, secret_hash=secret_hash(secret))


def key_parse(key: str) -> tuple[str, str] | None:
    """(lookup, secret) of a well-formed key, or None. The secret may hold `_` itself: the lookup's length splits."""
    if not key.startswith(PREFIX):
        return None
    body = key[len(PREFIX):]
    lookup, separator, secret = body[:LOOKUP_LENGTH], body[LOOKUP_LENGTH:LOOKUP_LENGTH + 1], body[LOOKUP_LENGTH + 1:]
    if separator != SEPARATOR or len(secret) != SECRET_LENGTH or not all(char in HEX_DIGITS for char in lookup):
        return None
    return lookup, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Whether the secret hashes to the stored hash, compared in constant time."""
    return hmac.compare_digest(secret_hash(secret), stored_hash)


def key_display(lookup: str) -> str:
    """What a person sees of a key after it was made: its prefix and lookup, enough to tell keys apart."""
    return f"{PREFIX}{lookup}"


class ApiKeyInvalid(ServiceError):
    """No key matches: mistyped, cut short, made up, deleted; or its account is disabled (then the message says so)."""

    code = ErrorCode.API_KEY_INVALID
    message = "This API key is not valid. Check that it was copied whole, or make a new one on your account page."


class ApiKeyRevoked(ServiceError):
    code = ErrorCode.API_KEY_REVOKED
    message = "This API key was revoked, so it no longer works. Make a new one on your account page."


ACCOUNT_DISABLED = "The account this API key belongs to is disabled, so the key no longer works."
