"""JWT authentication that honours revocation: the one class the native API (REST_FRAMEWORK) and the classic API
use to turn a Bearer token into a user."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings

from .selectors import user_by_id
from .tokens import token_revoked


class RevocableJWTAuthentication(JWTAuthentication):
    """SimpleJWT's authentication, refusing tokens older than the user's `tokens_valid_after` (a password change).

    A token of a deleted or deactivated user is refused too.
    """

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
