from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings

from .models import ApiKey, User
from .tokens import RefreshToken, token_revoked


def _password_errors(password: str, user: User) -> list[str]:
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        return list(exc.messages)
    return []


class RegisterInputSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, style={"input_type": "password"})

    def validate_email(self, value: str) -> str:
        # Whether the address already has an account is never said here (nor anywhere in the answer).
        return value.lower()

    def validate(self, attrs):
        # Checked here rather than in validate_password() so the similarity check can see the email; the messages
        # still belong to the password field.
        if errors := _password_errors(attrs["password"], User(email=attrs["email"])):
            raise serializers.ValidationError({"password": errors})
        return attrs


class RegisterOutputSerializer(serializers.Serializer):
    """The same answer for a new address and a known one."""

    email = serializers.EmailField()
    detail = serializers.CharField()


class PasswordChangeInputSerializer(serializers.Serializer):
    old_password = serializers.CharField(write_only=True, style={"input_type": "password"})
    new_password = serializers.CharField(write_only=True, style={"input_type": "password"})

    def validate_new_password(self, value: str) -> str:
        if errors := _password_errors(value, self.context["user"]):
            raise serializers.ValidationError(errors)
        return value


class RefreshInputSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class TokenObtainInputSerializer(TokenObtainPairSerializer):
    """Email and password for a token pair whose tokens record when the password was checked."""

    token_class = RefreshToken


class TokenRefreshInputSerializer(TokenRefreshSerializer):
    """A refresh token for a new pair (refresh tokens rotate; the used one is blacklisted).

    Refused (401) when the token is blacklisted, expired or forged, its user is gone or inactive, or a password
    change revoked it.
    """

    token_class = RefreshToken

    def validate(self, attrs):
        refresh = self.token_class(attrs["refresh"])  # raises TokenError: forged, expired or blacklisted
        user = User.objects.filter(**{api_settings.USER_ID_FIELD: refresh.payload.get(api_settings.USER_ID_CLAIM)}).first()
        if user is None or not api_settings.USER_AUTHENTICATION_RULE(user):
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account")
        if token_revoked(refresh, user):
            raise AuthenticationFailed("This token was revoked: sign in again.")
        return super().validate(attrs)


class UserOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "email_verified", "is_staff", "date_joined"]
        read_only_fields = fields


class LimitsOutputSerializer(serializers.Serializer):
    active_jobs = serializers.IntegerField(allow_null=True, help_text="Conversions queued or processing at once.")
    uploads_per_hour = serializers.IntegerField(allow_null=True, help_text="Uploads in any hour.")
    storage_mb = serializers.IntegerField(allow_null=True, help_text="MB of stored sources and MP3s together.")


class UsageOutputSerializer(serializers.Serializer):
    active_jobs = serializers.IntegerField(help_text="Conversions queued or processing now.")
    uploads_last_hour = serializers.IntegerField(help_text="Uploads in the last hour, deleted conversions' included.")
    storage_bytes = serializers.IntegerField(help_text="Bytes of stored sources and MP3s together.")


class MeOutputSerializer(UserOutputSerializer):
    """The signed-in user, the account's limits and what it uses of them."""

    # `limits` (None for no limits at all) and `usage` come in the context, from conversions' quotas and selectors.

    limits = serializers.SerializerMethodField(
        help_text="The account's limits; null for staff (no limits), and null for a limit that is not set."
    )
    usage = serializers.SerializerMethodField()

    class Meta(UserOutputSerializer.Meta):
        fields = [*UserOutputSerializer.Meta.fields, "limits", "usage"]
        read_only_fields = fields

    @extend_schema_field(LimitsOutputSerializer(allow_null=True))
    def get_limits(self, user):
        limits = self.context["limits"]
        return None if limits is None else LimitsOutputSerializer(limits).data

    @extend_schema_field(UsageOutputSerializer)
    def get_usage(self, user):
        return UsageOutputSerializer(self.context["usage"]).data


class ApiKeyCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=100, help_text="What the key is for, to tell it from others: e.g. the script or machine using it."
    )


class ApiKeyOutputSerializer(serializers.ModelSerializer):
    """A key as its owner sees it after it was made: never the secret."""

    prefix = serializers.CharField(
        read_only=True, help_text="The key's first characters (mp3k_ and its lookup), to tell keys apart."
    )

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at"]
        read_only_fields = fields
        extra_kwargs = {"last_used_at": {"help_text": "When the key was last used (to about a minute); null: never."}}


class ApiKeyCreatedOutputSerializer(ApiKeyOutputSerializer):
    """A key just made, with the key itself: the only answer that ever carries it."""

    # The key comes in the context: only its hash is stored.
    key = serializers.SerializerMethodField(
        help_text="The key: shown only in this answer, so keep it now. Send it as `Authorization: Bearer <key>`."
    )

    class Meta(ApiKeyOutputSerializer.Meta):
        fields = [*ApiKeyOutputSerializer.Meta.fields, "key"]
        read_only_fields = fields

    def get_key(self, api_key) -> str:
        return self.context["key"]
