"""Writes for accounts."""

from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from .models import User


@transaction.atomic
def user_create(*, email: str, password: str, is_staff: bool = False) -> User:
    """Create a user after Django's password validators accept the password (raises ValidationError)."""
    user = User(email=User.objects.normalize_email(email).lower(), is_staff=is_staff)
    validate_password(password, user=user)
    user.set_password(password)
    user.full_clean()
    user.save()
    return user
