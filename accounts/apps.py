from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import throttling  # noqa: F401  (connects the failed sign-in counter to user_login_failed)
