"""Reads for accounts."""

from django.contrib.auth import authenticate
from django.http import HttpRequest

from .models import User


def user_authenticate(*, request: HttpRequest | None, email: str, password: str) -> User | None:
    """The active user with these credentials, or None."""
    user = authenticate(request, email=email.lower(), password=password)
    return user if user is not None and user.is_active else None
