"""The authentication classes on their own. The API key class and `api_key_sign_in`: which credentials they claim,
what they answer, and that a failure is counted (through the APIs: test_keys_api.py, test_throttling.py). The JWT
class: a token checked once, its expiry and its user every time (every bad kind through the APIs:
tests/security/test_access.py)."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import AccessToken

from accounts.apikeys import ApiKeyInvalid, ApiKeyRevoked
from accounts.authentication import ApiKeyAuthentication, RevocableJWTAuthentication, api_key_sign_in
from accounts.models import ApiKey
from accounts.services import api_key_revoke
from accounts.throttling import sign_in_wait

pytestmark = pytest.mark.django_db


def request_with(authorization: str | None, address: str = "192.0.2.1") -> Request:
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return Request(APIRequestFactory().get("/api/conversions/", REMOTE_ADDR=address, **headers))


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Basic bXAza186eA==", "Token mp3k_0123456789ab_x", "Bearer eyJhbGciOi.e30.x",
])
def test_credentials_that_are_not_keys_are_left_to_the_next_class(authorization):
    assert ApiKeyAuthentication().authenticate(request_with(authorization)) is None


def test_a_jwt_is_left_to_the_jwt_class(user):
    assert ApiKeyAuthentication().authenticate(request_with(f"Bearer {AccessToken.for_user(user)}")) is None


def test_a_key_authenticates_its_owner_with_the_key_as_auth(user, api_key):
    for scheme in ("Bearer", "bearer", "BEARER"):
        authenticated_user, auth = ApiKeyAuthentication().authenticate(request_with(f"{scheme} {api_key}"))
        assert authenticated_user == user and auth == ApiKey.objects.get(user=user)


def test_a_refused_key_raises_authentication_failed_with_the_code_and_sentence(user, api_key):
    api_key_revoke(api_key=ApiKey.objects.get(user=user))
    with pytest.raises(exceptions.AuthenticationFailed) as refused:
        ApiKeyAuthentication().authenticate(request_with(f"Bearer {api_key}"))
    assert refused.value.detail == {"code": "api_key_revoked", "detail": ApiKeyRevoked.message}
    assert ApiKeyAuthentication().authenticate_header(request_with(None)) == 'Bearer realm="api"'


def test_sign_in_counts_each_failure_against_the_address_and_then_refuses(settings, user, api_key):
    settings.THROTTLE_LOGIN = "2/min"
    for _ in range(2):
        with pytest.raises(ApiKeyInvalid):
            api_key_sign_in(request_with(None), "mp3k_not-a-key")
    assert sign_in_wait(request_with(None), None) is not None
    assert sign_in_wait(request_with(None, address="192.0.2.2"), None) is None  # another address: nothing counted
    with pytest.raises(exceptions.Throttled):
        api_key_sign_in(request_with(None), api_key)
    assert api_key_sign_in(request_with(None, address="192.0.2.2"), api_key).user == user


# --- JWTs ------------------------------------------------------------------------------------------------------
def test_a_token_is_verified_once_and_its_user_read_every_time(user, django_assert_num_queries):
    token = str(AccessToken.for_user(user))
    with mock.patch.object(TokenBackend, "decode", autospec=True, side_effect=TokenBackend.decode) as decode:
        for _ in range(3):
            with django_assert_num_queries(1):  # its user, each time
                authenticated_user, validated = RevocableJWTAuthentication().authenticate(request_with(f"Bearer {token}"))
            assert authenticated_user == user and str(validated) == token
    assert decode.call_count == 1


def test_a_kept_token_that_has_since_expired_is_refused(user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(minutes=5))
    request = request_with(f"Bearer {token}")
    assert RevocableJWTAuthentication().authenticate(request)[0] == user  # checked, and kept
    later = timezone.now() + timedelta(minutes=6)
    with mock.patch("accounts.authentication.aware_utcnow", return_value=later), \
         mock.patch("rest_framework_simplejwt.tokens.aware_utcnow", return_value=later):
        with pytest.raises(InvalidToken):
            RevocableJWTAuthentication().authenticate(request)


def test_a_kept_token_is_refused_once_its_user_is_disabled_or_it_is_revoked(user):
    token = str(AccessToken.for_user(user))
    assert RevocableJWTAuthentication().authenticate(request_with(f"Bearer {token}"))[0] == user
    user.is_active = False
    user.save()
    with pytest.raises(exceptions.AuthenticationFailed, match="disabled"):
        RevocableJWTAuthentication().authenticate(request_with(f"Bearer {token}"))
    user.is_active, user.tokens_valid_after = True, timezone.now() + timedelta(seconds=1)
    user.save()
    with pytest.raises(exceptions.AuthenticationFailed, match="revoked"):
        RevocableJWTAuthentication().authenticate(request_with(f"Bearer {token}"))


def test_a_token_with_a_bad_signature_is_refused_every_time(user):
    token = str(AccessToken.for_user(user))
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            RevocableJWTAuthentication().authenticate(request_with(f"Bearer {forged}"))
