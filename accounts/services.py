"""Writes for accounts."""

from datetime import timedelta

from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from .apikeys import key_make
from .models import ApiKey, User
from .verification import account_email_queue


@transaction.atomic
def user_create(*, email: str, password: str, is_staff: bool = False, email_verified: bool = False) -> User:
    """Create a user after Django's password validators accept the password (raises ValidationError)."""
    user = User(email=User.objects.normalize_email(email).lower(), is_staff=is_staff, email_verified=email_verified)
    validate_password(password, user=user)
    user.set_password(password)
    user.full_clean()
    user.save()
    return user


def user_register(*, email: str, password: str) -> None:
    """Sign-up that tells nobody whether the address already had an account.

    A new address gets an account and the link that confirms it. A known one gets an email telling its owner
    that someone tried; nothing else changes. Either way the password is hashed and one email is queued, so
    both take about as long.
    """
    email = User.objects.normalize_email(email).lower()
    existing = User.objects.filter(email__iexact=email).first()
    if existing is None:
        try:
            account_email_queue(user=user_create(email=email, password=password), kind="verify")
            return
        except (ValidationError, IntegrityError):  # the same address registered at the same moment
            existing = User.objects.filter(email__iexact=email).first()
            if existing is None:
                raise
    make_password(password)
    account_email_queue(user=existing, kind="registration_attempt")


def user_send_verification(*, user: User) -> bool:
    """Send the link again; False when the address is already confirmed (nothing is sent)."""
    if user.email_verified:
        return False
    account_email_queue(user=user, kind="verify")
    return True


def user_verify_email(*, user: User) -> User:
    if not user.email_verified:
        User.objects.filter(pk=user.pk).update(email_verified=True)
        user.email_verified = True
    return user


@transaction.atomic
def user_change_password(*, user: User, new_password: str) -> User:
    """Set the password and revoke every token issued before now: access tokens by age, refresh tokens also
    on the blacklist. Validators have accepted `new_password` already."""
    user.set_password(new_password)
    user.tokens_valid_after = timezone.now()
    user.save(update_fields=["password", "tokens_valid_after"])
    user_revoke_refresh_tokens(user=user)
    return user


def user_revoke_refresh_tokens(*, user: User) -> int:
    """Blacklist every refresh token of the user that is not blacklisted yet; the number blacklisted."""
    outstanding = OutstandingToken.objects.filter(user=user, blacklistedtoken__isnull=True)
    created = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in outstanding], ignore_conflicts=True
    )
    return len(created)


# --- Personal API keys ---------------------------------------------------------------------------------------------
# A key's last use is recorded this coarsely: a client polling with it costs no write per request.
LAST_USED_GRANULARITY = timedelta(minutes=1)


def api_key_create(*, user: User, name: str) -> tuple[ApiKey, str]:
    """A new key for `user`, and the key itself: returned this once, never stored (only its secret's hash is).

    The lookup is 48 random bits: two keys drawing the same one is vanishingly unlikely, and its unique index would
    refuse the second rather than mix them up.
    """
    made = key_make()
    api_key = ApiKey.objects.create(user=user, name=name, lookup=made.lookup, secret_hash=made.secret_hash)
    return api_key, made.key


def api_key_revoke(*, api_key: ApiKey) -> bool:
    """Stop the key working from now on; False if it was revoked already."""
    now = timezone.now()
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    if revoked:
        api_key.revoked_at = now
    return bool(revoked)


def api_key_touch(*, api_key: ApiKey) -> bool:
    """Record that the key was just used, unless that was recorded less than LAST_USED_GRANULARITY ago.

    A conditional update: requests arriving together write once between them.
    """
    now = timezone.now()
    if api_key.last_used_at is not None and api_key.last_used_at > now - LAST_USED_GRANULARITY:
        return False
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_GRANULARITY)
    if ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now):
        api_key.last_used_at = now
        return True
    return False
