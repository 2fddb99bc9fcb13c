"""Registration, tokens and the signed-in user."""

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, status
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView as BaseTokenRefreshView

from mp3converter.errors import PermissionDenied

from .serializers import RegisterInputSerializer, UserOutputSerializer
from .services import user_create


class RegisterView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "register"

    @extend_schema(
        request=RegisterInputSerializer,
        responses={
            201: UserOutputSerializer,
            400: OpenApiResponse(description="A field is invalid (the body names it)."),
            403: OpenApiResponse(description="Registration is closed."),
            415: OpenApiResponse(description="The body is not JSON or form data."),
            429: OpenApiResponse(description="Too many attempts."),
        },
    )
    def post(self, request):
        if not settings.REGISTRATION_OPEN:
            raise PermissionDenied("Registration is closed. Ask an administrator for an account.")
        serializer = RegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_create(**serializer.validated_data)
        return Response(UserOutputSerializer(user).data, status=status.HTTP_201_CREATED)


TOKEN_ERRORS = {
    400: OpenApiResponse(description="A field is missing."),
    401: OpenApiResponse(description="Wrong credentials, or an invalid or expired token."),
    415: OpenApiResponse(description="The body is not JSON or form data."),
    429: OpenApiResponse(description="Too many attempts."),
}


@extend_schema_view(post=extend_schema(responses={200: TokenObtainPairView.serializer_class, **TOKEN_ERRORS}))
class TokenView(TokenObtainPairView):
    """Exchange email and password for an access and a refresh token."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"


@extend_schema_view(post=extend_schema(responses={200: BaseTokenRefreshView.serializer_class, **TOKEN_ERRORS}))
class TokenRefreshView(BaseTokenRefreshView):
    """Exchange a refresh token for a new access token (throttled like sign-in)."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"


class MeView(APIView):
    @extend_schema(responses={200: UserOutputSerializer, 401: OpenApiResponse(description="Not signed in.")})
    def get(self, request):
        return Response(UserOutputSerializer(request.user).data)
