"""Stopping password guessing on every door that takes a password, and throttling registration.

One rule for every sign-in door (the token API, token refresh, the classic `/login`, the password change, the
browsable API's and the admin's login pages, and any later form that calls `django.contrib.auth.authenticate`):
at most `THROTTLE_LOGIN` failed attempts (e.g. `10/min`) per account and per client address within the window.
Past either, the door answers 429 with `Retry-After`, even to the right password, until enough failures age out.

The counts live in the default cache (the database cache unless `CACHE_URL` says otherwise), so every process
and pod shares them. The address comes from `mp3converter.clientip.client_ip`, never from a header the client
controls.

How the pieces fit:
- `user_login_failed` (sent by `authenticate()` on every failure) counts the failure: `record_failure`, which
  takes a slot with the cache's atomic `add`, so failures that arrive at once are all counted.
- `SignInThrottleBackend` (Django's model backend, the one in `AUTHENTICATION_BACKENDS`) refuses any
  `authenticate()` past the limit, so no caller can forget the check; it marks the request so the HTML forms
  answer 429 (`SignInThrottleMiddleware`).
- The API views ask `sign_in_wait` before they authenticate and raise DRF's `Throttled` (the classic API turns it
  into its plain-text 429).
- A personal API key is a credential too (`accounts.authentication.api_key_sign_in`): a key that fails counts
  against the client address (a key names no account until it matches), and past the limit every key from that
  address answers 429, the right one included.
"""

import hashlib
import time
from collections.abc import Mapping

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest
from django.template.response import TemplateResponse
from rest_framework.throttling import ScopedRateThrottle

from mp3converter.clientip import client_ip

# The attribute that marks a request refused for too many failures: the seconds to wait.
RETRY_AFTER_ATTRIBUTE = "sign_in_retry_after"
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """`10/min` → (10, 60), as DRF reads its rates."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[0]]


def _http_request(request) -> HttpRequest | None:
    # DRF wraps Django's request; attributes must be set on the one the middleware sees.
    return getattr(request, "_request", request)


def _keys(request, email: str | None) -> list[str]:
    keys = []
    if email:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        keys.append(f"signin-failures:account:{digest}")
    if request is not None and (address := client_ip(request)):
        keys.append(f"signin-failures:address:{address}")
    return keys


def _slot_keys(key: str, limit: int) -> list[str]:
    return [f"{key}:{slot}" for slot in range(limit)]


def _failures(key: str, limit: int, now: float, window: int) -> list[float]:
    """When each failure still counted against `key` happened."""
    moments = cache.get_many(_slot_keys(key, limit)).values()
    return sorted(moment for moment in moments if isinstance(moment, float) and moment > now - window)


def sign_in_wait(request, email: str | None) -> int | None:
    """Seconds until this account and address may try again, or None if they may try now."""
    limit, window = parse_rate(settings.THROTTLE_LOGIN)
    now = time.time()
    waits = []
    for key in _keys(request, email):
        failures = _failures(key, limit, now, window)
        if len(failures) >= limit:
            # Free again when the oldest failure leaves the window and gives its slot back.
            waits.append(failures[0] + window - now)
    return max(1, int(max(waits)) + 1) if waits else None


def record_failure(request, email: str | None) -> None:
    """Count one failed attempt against the account and the address.

    Each failure takes one of `limit` slots that expire with the window, with the cache's atomic `add` (an INSERT
    on the database cache's primary key, SET NX on Redis). No read-modify-write: failures that arrive at once,
    from many threads, processes or pods, each take their own slot, and none overwrites another's count. When
    every slot is taken the limit is reached and there is nothing more to count.
    """
    limit, window = parse_rate(settings.THROTTLE_LOGIN)
    now = time.time()
    for key in _keys(request, email):
        for slot_key in _slot_keys(key, limit):
            if cache.add(slot_key, now, timeout=window):
                break


def data_field(request, name: str) -> str | None:
    """A string field of a DRF request's body, or None (absent, not a string, or the body is not an object)."""
    data = request.data
    value = data.get(name) if isinstance(data, Mapping) else None
    return value if isinstance(value, str) else None


def credentials_email(credentials: dict) -> str | None:
    """The account named by `authenticate()`'s credentials: forms send `username`, the API sends `email`."""
    value = credentials.get("username") or credentials.get("email")
    return value if isinstance(value, str) else None


@receiver(user_login_failed, dispatch_uid="accounts.throttling.count_failed_sign_in")
def count_failed_sign_in(sender, credentials, request=None, **kwargs):
    http_request = _http_request(request)
    if http_request is not None and getattr(http_request, RETRY_AFTER_ATTRIBUTE, None):
        return  # refused for the limit without a password check: not another guess
    record_failure(request, credentials_email(credentials))


class SignInThrottleBackend(ModelBackend):
    """Django's model backend, refusing any authentication past the limit before a password is checked."""

    def authenticate(self, request, username=None, password=None, **credentials):
        email = username or credentials.get("email")
        wait = sign_in_wait(request, email if isinstance(email, str) else None)
        if wait is None:
            return super().authenticate(request, username=username, password=password, **credentials)
        if (http_request := _http_request(request)) is not None:
            setattr(http_request, RETRY_AFTER_ATTRIBUTE, wait)
        # authenticate() then answers None, as for wrong credentials; the views and the middleware answer 429.
        raise PermissionDenied


class SignInThrottleMiddleware:
    """A sign-in page refused for too many failures answers 429 with Retry-After instead of its form."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        wait = getattr(request, RETRY_AFTER_ATTRIBUTE, None)
        # The APIs answer their own 429 (JSON or plain text); only HTML pages are replaced.
        if wait and response.get("Content-Type", "").startswith("text/html"):
            page = TemplateResponse(request, "accounts/too_many_attempts.html", {"wait": wait}, status=429)
            page["Retry-After"] = str(wait)
            return page.render()
        return response


class ClientAddressRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, keyed on the trusted client address and reading its rate when it runs.

    Signed-in users are counted per account, others per address, as DRF does.
    """

    def get_ident(self, request) -> str:
        return client_ip(request)

    def get_rate(self):
        return {"login": settings.THROTTLE_LOGIN, "register": settings.THROTTLE_REGISTER}[self.scope]


class RegisterAddressThrottle(ClientAddressRateThrottle):
    """Registration per email address too: nobody fills one inbox with registration mail from many addresses."""

    def get_cache_key(self, request, view):
        email = data_field(request, "email")
        if email is None or not email.strip():
            return None
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return self.cache_format % {"scope": f"{self.scope}-email", "ident": digest}
