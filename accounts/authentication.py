"""JWT authentication that honours revocation: the one class the native API (REST_FRAMEWORK) and the classic API
use to turn a Bearer token into a user."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed

from .tokens import token_revoked


class RevocableJWTAuthentication(JWTAuthentication):
    """SimpleJWT's authentication, refusing tokens older than the user's `tokens_valid_after` (a password change).

    A deleted or deactivated user is refused by SimpleJWT itself.
    """

    def get_user(self, validated_token):
        user = super().get_user(validated_token)
        if token_revoked(validated_token, user):
            raise AuthenticationFailed("This token was revoked: sign in again.")
        return user


class RevocableJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of the class above: SimpleJWT's bearer scheme."""

    target_class = RevocableJWTAuthentication
