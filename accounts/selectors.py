"""Reads for accounts."""

from django.contrib.auth import authenticate
from django.http import HttpRequest

from mp3converter.prepared import PreparedRead

from .models import User

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
