"""Registration, tokens and the signed-in user."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView

from .serializers import RegisterInputSerializer, UserOutputSerializer
from .services import user_create


class RegisterView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "register"

    @extend_schema(request=RegisterInputSerializer, responses={201: UserOutputSerializer})
    def post(self, request):
        if not settings.REGISTRATION_OPEN:
            raise PermissionDenied("Registration is closed. Ask an administrator for an account.")
        serializer = RegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_create(**serializer.validated_data)
        return Response(UserOutputSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenView(TokenObtainPairView):
    """Exchange email and password for an access and a refresh token."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"


class MeView(APIView):
    @extend_schema(responses=UserOutputSerializer)
    def get(self, request):
        return Response(UserOutputSerializer(request.user).data)
