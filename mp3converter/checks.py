"""The signing keys a deployment runs with (and the metrics token, held to the same rule): what makes one too weak,
and the `check --deploy` check that says so.

The settings refuse a weak key when DEBUG is off (settings/base.py), so a production process never starts with one;
the deploy check tells the same to whoever runs `manage.py check --deploy` with DEBUG on, before deploying.
"""

from django.conf import settings
from django.core import checks

KEY_MIN_LENGTH = 50
# Marks of a value someone was meant to replace: the examples' `change-me-…`, Django's `django-insecure-…` and the
# like. Each is long enough that a random key contains it by chance about never (a 4-letter word would, 1 key in 20,000).
PLACEHOLDERS = (
    "change-me",
    "change_me",
    "changeme",
    "replace-me",
    "replace_me",
    "replaceme",
    "django-insecure",
    "insecure",
    "placeholder",
    "example",
    "secret",
    "password",
    "dummy",
    "xxxxx",
)
HOW_TO_MAKE_ONE = "Make one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"


def key_weakness(key: str) -> str | None:
    """Why a signing key is unfit for production, in words that follow its name; None when it is fit."""
    lowered = key.lower()
    for placeholder in PLACEHOLDERS:
        if placeholder in lowered:
            return f"contains the placeholder {placeholder!r}"
    if len(key) < KEY_MIN_LENGTH:
        return f"is {len(key)} characters long, fewer than {KEY_MIN_LENGTH}"
    if len(set(key)) < 5:
        return "repeats fewer than 5 different characters"
    return None


def weak_key_message(name: str, weakness: str) -> str:
    return (
        f"{name} {weakness}: with DJANGO_DEBUG off the service needs a random key of at least {KEY_MIN_LENGTH} "
        f"characters. {HOW_TO_MAKE_ONE}"
    )


@checks.register(checks.Tags.security, deploy=True)
def signing_keys_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    keys = {"DJANGO_SECRET_KEY": settings.SECRET_KEY}
    if settings.SIMPLE_JWT["SIGNING_KEY"] != settings.SECRET_KEY:
        keys["JWT_SIGNING_KEY"] = settings.SIMPLE_JWT["SIGNING_KEY"]
    if settings.METRICS_TOKEN:
        keys["METRICS_TOKEN"] = settings.METRICS_TOKEN
    found = []
    for name, key in keys.items():
        if weakness := key_weakness(key):
            found.append(checks.Error(f"{name} {weakness}.", hint=HOW_TO_MAKE_ONE, id="mp3converter.E001"))
    return found
