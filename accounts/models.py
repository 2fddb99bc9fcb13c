"""Users sign in with their email address; `is_staff` makes a user an admin. Each may hold personal API keys."""

import uuid

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models

from .apikeys import key_display


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email: str, password: str | None = None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        # `createsuperuser` is run by whoever owns the deployment: the address needs no confirming.
        extra_fields.setdefault("email_verified", True)
        return self._create_user(email, password, **extra_fields)

    def get_by_natural_key(self, username):
        # Emails are stored lower-cased, so sign-in ignores the case the user typed.
        return self.get(**{self.model.USERNAME_FIELD: username.lower()})


class User(AbstractUser):
    username = None
    email = models.EmailField("email address", unique=True)
    # Set once the owner of the address followed the link in the verification email (accounts made by
    # `createsuperuser` or in the admin count as verified). Until then the account may not upload.
    email_verified = models.BooleanField(default=False, db_default=False)
    # Every token issued before this moment is refused (set by a password change).
    tokens_valid_after = models.DateTimeField(null=True, blank=True, editable=False)
    # Per-user limits; empty means the default from the environment (QUOTA_ACTIVE_JOBS, QUOTA_UPLOADS_PER_HOUR,
    # QUOTA_STORAGE_MB). Staff are exempt.
    quota_active_jobs = models.PositiveIntegerField(
        null=True, blank=True, help_text="Queued or processing jobs at once. Empty: QUOTA_ACTIVE_JOBS."
    )
    quota_uploads_per_hour = models.PositiveIntegerField(
        null=True, blank=True, help_text="Uploads in any hour. Empty: QUOTA_UPLOADS_PER_HOUR."
    )
    quota_storage_mb = models.PositiveIntegerField(
        null=True, blank=True, help_text="MB of stored sources and MP3s together. Empty: QUOTA_STORAGE_MB."
    )

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def clean(self):
        super().clean()
        # Forms (the admin's included) store the address lower-cased too, so uniqueness and sign-in ignore case.
        self.email = self.email.lower()


class ApiKey(models.Model):
    """A personal API key: `Authorization: Bearer mp3k_…` works wherever a JWT does (accounts/apikeys.py).

    Only the lookup and the secret's hash are kept. A revoked key keeps its row, so using it is answered with
    "revoked" rather than "not valid"; it is no longer listed to its owner.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    lookup = models.CharField(max_length=12, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written at most about once a minute per key (accounts/services.py: api_key_touch), not on every request.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="api_key_user_created")]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def prefix(self) -> str:
        return key_display(self.lookup)
