"""Reads for accounts."""

import uuid

from django.contrib.auth import authenticate
from django.db.models import QuerySet
from django.http import HttpRequest

from mp3converter.prepared import PreparedRead

from .apikeys import ACCOUNT_DISABLED, NO_HASH, ApiKeyInvalid, ApiKeyRevoked, key_parse, secret_matches
from .models import ApiKey, User

# Every request signed with a token reads its user: compiled once per connection (mp3converter/prepared.py).
_USER_BY_ID = PreparedRead(lambda user_id: User.objects.filter(pk=user_id)[:1], user_id=User._meta.pk)


def user_authenticate(*, request: HttpRequest | None, email: str, password: str) -> User | None:
    """The active user with these credentials, or None."""
    user = authenticate(request, email=email.lower(), password=password)
    return user if user is not None and user.is_active else None


def user_by_id(user_id) -> User | None:
    """The user with this id, active or not, or None (also for an id that is not a number)."""
    try:
        return _USER_BY_ID.first(user_id=user_id)
    except (TypeError, ValueError):
        return None


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    """The user's keys that work (not revoked), newest first."""
    return ApiKey.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at")


def api_key_get(*, user: User, key_id) -> ApiKey | None:
    """One of the user's working keys, or None: an id that is malformed, unknown, revoked or another user's alike."""
    try:
        key_id = uuid.UUID(str(key_id))
    except ValueError:
        return None
    return api_key_list(user=user).filter(pk=key_id).first()


def api_key_authenticate(*, key: str) -> ApiKey:
    """The key's row with its user, for a key that works.

    Raises ApiKeyInvalid (no such key, a wrong secret, or its account is disabled) or ApiKeyRevoked. The secret is
    checked before anything else is told: a revoked key's lookup alone learns nothing.
    """
    parsed = key_parse(key)
    api_key = ApiKey.objects.select_related("user").filter(lookup=parsed[0]).first() if parsed else None
    matches = secret_matches(parsed[1] if parsed else "", api_key.secret_hash if api_key else NO_HASH)
    if api_key is None or not matches:
        raise ApiKeyInvalid()
    if api_key.revoked_at is not None:
        raise ApiKeyRevoked()
    if not api_key.user.is_active:
        raise ApiKeyInvalid(ACCOUNT_DISABLED)
    return api_key
