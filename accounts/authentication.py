"""The Bearer credentials the APIs take: JWTs that honour revocation, and personal API keys (`mp3k_…`).

The native API (REST_FRAMEWORK) lists both classes; the classic API calls `RevocableJWTAuthentication` and
`api_key_sign_in` itself, for its own statuses and bodies.
"""

from functools import lru_cache

from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import aware_utcnow

from mp3converter.errors import ServiceError

from .apikeys import PREFIX, is_api_key
from .models import ApiKey
from .selectors import api_key_authenticate, user_by_id
from .services import api_key_touch
from .throttling import record_failure, sign_in_wait
from .tokens import token_revoked


@lru_cache(maxsize=4096)
def _verified(raw_token: bytes):
    """The token, its signature and claims checked by SimpleJWT; a token it refuses raises, and is not kept."""
    return JWTAuthentication().get_validated_token(raw_token)


class RevocableJWTAuthentication(JWTAuthentication):
    """SimpleJWT's authentication, refusing tokens older than the user's `tokens_valid_after` (a password change).

    A token of a deleted or deactivated user is refused too.
    """

    def get_validated_token(self, raw_token):
        # A client polling a job sends the same token many times a minute: its signature and claims are checked the
        # first time this process sees it (the last 4096 tokens are kept). Only whether it has expired changes with
        # time, so that is checked on every request, and so are its user and whether it was revoked (get_user).
        token = _verified(raw_token)
        try:
            token.check_exp(current_time=aware_utcnow())
        except TokenError:
            return super().get_validated_token(raw_token)  # refused in SimpleJWT's words
        return token

    def get_user(self, validated_token):
        # SimpleJWT's own checks (the user id is the `id` claim, SimpleJWT's default), with the user read by a query
        # compiled once (accounts.selectors): this runs on every request signed with a token.
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as e:
            raise InvalidToken(_("Token contained no recognizable user identification")) from e
        user = user_by_id(user_id)
        if user is None:
            raise AuthenticationFailed("The account this token belongs to no longer exists.")
        if not user.is_active:
            raise AuthenticationFailed("The account this token belongs to is disabled.")
        if token_revoked(validated_token, user):
            raise AuthenticationFailed("This token was revoked: sign in again.")
        return user


class RevocableJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of the class above: SimpleJWT's bearer scheme."""

    target_class = RevocableJWTAuthentication


def api_key_sign_in(request, key: str) -> ApiKey:
    """The working key `key` names, with its user; counted like every credential (accounts/throttling.py).

    Past THROTTLE_LOGIN failures from the client address: DRF's Throttled (429), even for a good key, as for a right
    password. A key that does not work counts one failure against the address and raises its ServiceError
    (ApiKeyInvalid or ApiKeyRevoked, 401). A key that works records its use (about once a minute).
    """
    if (wait := sign_in_wait(request, None)) is not None:
        raise exceptions.Throttled(wait=wait)
    try:
        api_key = api_key_authenticate(key=key)
    except ServiceError:
        record_failure(request, None)
        raise
    api_key_touch(api_key=api_key)
    return api_key


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer mp3k_…`: a personal API key. Any other credential is left to the next class.

    Listed before the JWT class, which would refuse a key as a malformed token. A refused key answers 401 with
    `{"code", "detail"}`, like the service's own errors, and the same WWW-Authenticate as a refused JWT.
    """

    keyword = b"bearer"

    def authenticate(self, request):
        scheme, _, credential = get_authorization_header(request).partition(b" ")
        credential = credential.strip().decode("latin-1")
        if scheme.lower() != self.keyword or not is_api_key(credential):
            return None
        try:
            api_key = api_key_sign_in(request, credential)
        except ServiceError as error:
            raise exceptions.AuthenticationFailed({"code": error.code.value, "detail": error.message}) from None
        return api_key.user, api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of personal API keys: a Bearer credential that is not a JWT."""

    target_class = ApiKeyAuthentication
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": f"{PREFIX}… API key",
            "description": (
                f"A personal API key (`{PREFIX}…`), made with POST /api/auth/keys/ or on the account page and shown "
                "once: send it as `Authorization: Bearer <key>`. It works wherever a JWT does, the classic /upload "
                "and /download included, until it is revoked (DELETE /api/auth/keys/{id}/). A refused key answers "
                "401 with code api_key_invalid or api_key_revoked; failed keys count against the client address's "
                "limit on failed sign-ins (429)."
            ),
        }
