"""Users sign in with their email address; `is_staff` makes a user an admin."""

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models


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
