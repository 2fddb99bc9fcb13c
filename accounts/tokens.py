"""The JWTs this service issues, and when one stops being valid.

Every token carries `auth_us`: the moment (microseconds since the epoch) the password behind it was checked. A
refresh keeps it, so an access token made from a refresh, and every rotated refresh, date from the same sign-in.
A password change sets the user's `tokens_valid_after`; a token whose sign-in happened before that moment is
refused. `iat` alone counts whole seconds, which cannot tell a token issued just before a change from one issued
just after it in the same second; tokens without `auth_us` (none that this service issues) are judged by `iat`,
on the safe side: any issued in the second of the change or before it is refused.
"""

from datetime import UTC, datetime, timedelta

from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken as BaseAccessToken, RefreshToken as BaseRefreshToken

AUTH_TIME_CLAIM = "auth_us"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _stamp(token, user):
    token[AUTH_TIME_CLAIM] = epoch_us(timezone.now())
    return token


class AccessToken(BaseAccessToken):
    @classmethod
    def for_user(cls, user):
        return _stamp(super().for_user(user), user)


class RefreshToken(BaseRefreshToken):
    access_token_class = AccessToken

    @classmethod
    def for_user(cls, user):
        return _stamp(super().for_user(user), user)


def token_signed_in_at_us(token) -> int:
    """When the token's sign-in happened, in microseconds; for a token without `auth_us`, the start of its `iat`."""
    stamped = token.get(AUTH_TIME_CLAIM)
    if isinstance(stamped, int):
        return stamped
    return int(token.get("iat", 0)) * 1_000_000


def token_revoked(token, user) -> bool:
    """True when the user revoked every token of this age (a password change)."""
    if user.tokens_valid_after is None:
        return False
    return token_signed_in_at_us(token) < epoch_us(user.tokens_valid_after)


def token_pair(user) -> dict[str, str]:
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}
