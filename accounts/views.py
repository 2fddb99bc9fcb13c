"""Registration, email verification, tokens (sign-in, refresh, logout), the password, the signed-in user and their
personal API keys."""

import jwt
from django.conf import settings
from django.contrib.auth import update_session_auth_hash
from django.http import Http404
from django.shortcuts import render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView as BaseTokenRefreshView

from conversions.selectors import conversion_usage
from conversions.services import NO_LIMITS, quota_limits
from mp3converter.errors import PermissionDenied

from .models import User
from .selectors import api_key_get, api_key_list, user_authenticate
from .serializers import (
    ApiKeyCreatedOutputSerializer,
    ApiKeyCreateInputSerializer,
    ApiKeyOutputSerializer,
    MeOutputSerializer,
    PasswordChangeInputSerializer,
    RefreshInputSerializer,
    RegisterInputSerializer,
    RegisterOutputSerializer,
    TokenObtainInputSerializer,
    TokenPairSerializer,
    TokenRefreshInputSerializer,
)
from .services import (
    api_key_create,
    api_key_revoke,
    user_change_password,
    user_register,
    user_send_verification,
    user_verify_email,
)
from .throttling import (
    RETRY_AFTER_ATTRIBUTE,
    ClientAddressRateThrottle,
    RegisterAddressThrottle,
    data_field,
    record_failure,
    sign_in_wait,
)
from .tokens import RefreshToken, token_pair
from .verification import verified_user

REGISTERED = "We sent an email to this address. Follow the link in it to confirm the address, then sign in."
TOO_MANY = OpenApiResponse(description="Too many attempts (Retry-After says when to try again).")


def check_sign_in_allowed(request, email: str | None) -> None:
    """Raises DRF's Throttled (429, Retry-After) past THROTTLE_LOGIN failures for this account or address."""
    if (wait := sign_in_wait(request, email)) is not None:
        raise exceptions.Throttled(wait=wait)


class RegisterView(APIView):
    name = "Register"
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [ClientAddressRateThrottle, RegisterAddressThrottle]
    throttle_scope = "register"

    @extend_schema(
        request=RegisterInputSerializer,
        responses={
            201: RegisterOutputSerializer,
            400: OpenApiResponse(description="A field is invalid (the body names it)."),
            403: OpenApiResponse(description="Registration is closed."),
            415: OpenApiResponse(description="The body is not JSON or form data."),
            429: TOO_MANY,
        },
    )
    def post(self, request):
        """Sign up. The answer is the same whether or not the address already has an account."""
        if not settings.REGISTRATION_OPEN:
            raise PermissionDenied("Registration is closed. Ask an administrator for an account.")
        serializer = RegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_register(**serializer.validated_data)
        body = {"email": serializer.validated_data["email"], "detail": REGISTERED}
        return Response(RegisterOutputSerializer(body).data, status=status.HTTP_201_CREATED)


class VerifyEmailView(APIView):
    """The link in the verification email: confirms the address and answers a short page."""

    name = "Confirm email address"
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    @extend_schema(
        parameters=[OpenApiParameter("token", str, required=True, description="The token from the email's link.")],
        responses={(200, "text/html"): OpenApiTypes.STR, (400, "text/html"): OpenApiTypes.STR},
    )
    def get(self, request):
        user = verified_user(request.query_params.get("token", ""))
        if user is not None:
            user_verify_email(user=user)
        return render(request._request, "accounts/verified.html", {"verified": user},
                      status=status.HTTP_200_OK if user is not None else status.HTTP_400_BAD_REQUEST)


class ResendVerificationView(APIView):
    name = "Resend the confirmation link"
    throttle_classes = [ClientAddressRateThrottle]
    throttle_scope = "register"

    @extend_schema(
        request=None,
        responses={
            202: OpenApiResponse(description="The link was sent again."),
            200: OpenApiResponse(description="The address is already confirmed; nothing was sent."),
            401: OpenApiResponse(description="Not signed in."),
            429: TOO_MANY,
        },
    )
    def post(self, request):
        """Send the verification link again to the signed-in user's address."""
        if user_send_verification(user=request.user):
            return Response({"detail": "We sent the link again."}, status=status.HTTP_202_ACCEPTED)
        return Response({"detail": "This address is already confirmed."}, status=status.HTTP_200_OK)


TOKEN_ERRORS = {
    400: OpenApiResponse(description="A field is missing."),
    401: OpenApiResponse(description="Wrong credentials, or an invalid, expired or revoked token."),
    415: OpenApiResponse(description="The body is not JSON or form data."),
    429: TOO_MANY,
}


@extend_schema_view(post=extend_schema(responses={200: TokenPairSerializer, **TOKEN_ERRORS}))
class TokenView(TokenObtainPairView):
    """Exchange email and password for an access and a refresh token."""

    name = "Token"
    serializer_class = TokenObtainInputSerializer
    throttle_classes: list = []  # failures are counted per account and address (accounts/throttling.py)

    def post(self, request, *args, **kwargs):
        check_sign_in_allowed(request, data_field(request, "email"))
        return super().post(request, *args, **kwargs)


def _refresh_account_email(raw) -> str | None:
    """The address of the account a refresh token names, read without trusting it (it is only a counter key)."""
    if not isinstance(raw, str):
        return None
    try:
        claims = jwt.decode(raw, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    user_id = claims.get(api_settings.USER_ID_CLAIM) if isinstance(claims, dict) else None
    if not isinstance(user_id, int | str):
        return None
    return User.objects.filter(**{api_settings.USER_ID_FIELD: user_id}).values_list("email", flat=True).first()


@extend_schema_view(post=extend_schema(responses={200: TokenPairSerializer, **TOKEN_ERRORS}))
class TokenRefreshView(BaseTokenRefreshView):
    """Exchange a refresh token for a new pair; the used refresh token stops working."""

    name = "Refresh token"
    serializer_class = TokenRefreshInputSerializer
    throttle_classes: list = []

    def post(self, request, *args, **kwargs):
        email = _refresh_account_email(data_field(request, "refresh"))
        check_sign_in_allowed(request, email)
        try:
            return super().post(request, *args, **kwargs)
        except (InvalidToken, TokenError, exceptions.AuthenticationFailed):
            record_failure(request, email)
            raise


class LogoutView(APIView):
    """Revoke a refresh token. The refresh token is the credential: whoever holds it may end it.

    The default authenticators stay, so a bad token answers 401 with its WWW-Authenticate like every token door.
    """

    name = "Log out"
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        request=RefreshInputSerializer,
        responses={204: None, 400: OpenApiResponse(description="No refresh token."),
                   401: OpenApiResponse(description="Not a valid refresh token (forged, expired or already revoked).")},
    )
    def post(self, request):
        serializer = RefreshInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            RefreshToken(serializer.validated_data["refresh"]).blacklist()
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordChangeView(APIView):
    name = "Password"

    @extend_schema(
        request=PasswordChangeInputSerializer,
        responses={
            200: TokenPairSerializer,
            400: OpenApiResponse(description="The old password is wrong, or the new one is refused (the body names the field)."),
            401: OpenApiResponse(description="Not signed in."),
            429: TOO_MANY,
        },
    )
    def post(self, request):
        """Change the password. Every token issued before stops working; the answer is a new token pair."""
        user = request.user
        check_sign_in_allowed(request, user.email)
        serializer = PasswordChangeInputSerializer(data=request.data, context={"user": user})
        serializer.is_valid(raise_exception=True)
        # Through authenticate(): a wrong old password counts as a failed sign-in, like on every other door.
        if user_authenticate(request=request, email=user.email, password=serializer.validated_data["old_password"]) is None:
            if wait := getattr(request._request, RETRY_AFTER_ATTRIBUTE, None):  # the limit was reached meanwhile
                raise exceptions.Throttled(wait=wait)
            raise exceptions.ValidationError({"old_password": ["The current password is not correct."]})
        user_change_password(user=user, new_password=serializer.validated_data["new_password"])
        if request.auth is None:  # a session (the browsable API) stays signed in
            update_session_auth_hash(request._request, user)
        return Response(TokenPairSerializer(token_pair(user)).data)


class MeView(APIView):
    name = "Me"

    @extend_schema(responses={200: MeOutputSerializer, 401: OpenApiResponse(description="Not signed in.")})
    def get(self, request):
        limits = quota_limits(user=request.user)
        context = {"limits": None if limits == NO_LIMITS else limits, "usage": conversion_usage(user=request.user)}
        return Response(MeOutputSerializer(request.user, context=context).data)


NOT_SIGNED_IN = OpenApiResponse(description="Not signed in, or the credential was refused.")


class ApiKeyListCreateView(APIView):
    name = "API keys"

    @extend_schema(responses={200: ApiKeyOutputSerializer(many=True), 401: NOT_SIGNED_IN})
    def get(self, request):
        """Your working API keys, newest first: never the keys themselves."""
        return Response(ApiKeyOutputSerializer(api_key_list(user=request.user), many=True).data)

    @extend_schema(
        request=ApiKeyCreateInputSerializer,
        responses={
            201: ApiKeyCreatedOutputSerializer,
            400: OpenApiResponse(description="No name, or one longer than 100 characters."),
            401: NOT_SIGNED_IN,
            415: OpenApiResponse(description="The body is not JSON or form data."),
        },
    )
    def post(self, request):
        """Make an API key. The answer carries the key, `mp3k_…`, this once: only a hash of it is kept."""
        serializer = ApiKeyCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key, key = api_key_create(user=request.user, name=serializer.validated_data["name"])
        body = ApiKeyCreatedOutputSerializer(api_key, context={"key": key}).data
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    name = "API key"

    @extend_schema(
        parameters=[OpenApiParameter("key_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The key's id.")],
        responses={
            204: None,
            401: NOT_SIGNED_IN,
            404: OpenApiResponse(description="None of your working keys has this id (another user's included)."),
        }
    )
    def delete(self, request, key_id):
        """Revoke an API key: from now on it answers 401 (code api_key_revoked)."""
        api_key = api_key_get(user=request.user, key_id=key_id)
        if api_key is None:
            raise Http404("No API key with this id.")
        api_key_revoke(api_key=api_key)
        return Response(status=status.HTTP_204_NO_CONTENT)
