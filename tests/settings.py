"""Settings for the test suite: the project's own settings, with the test services' addresses as defaults.

Only environment defaults are set here (plus a fast password hasher), so the suite exercises the same settings
code as production. Worker processes started by the tests inherit this environment.
"""

import os
import secrets
import socket
import tempfile


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("DATABASE_URL", "mysql://mp3converter:mp3converter@127.0.0.1:3306/mp3converter")
os.environ.setdefault("CELERY_BROKER_URL", "amqp://mp3converter:mp3converter@127.0.0.1:5672/mp3converter_test")
# Made only when unset: worker processes import these settings too, and must not leave empty folders behind.
# The folders made here are removed at the end of the session (tests/conftest.py).
CREATED_TEMP_DIRS = []
for name, prefix in (("MEDIA_ROOT", "mp3converter-test-media-"), ("STATIC_ROOT", "mp3converter-test-static-")):
    if name not in os.environ:
        os.environ[name] = tempfile.mkdtemp(prefix=prefix)
        CREATED_TEMP_DIRS.append(os.environ[name])
os.environ.setdefault("TEST_SMTP_PORT", str(_free_port()))
os.environ.setdefault("EMAIL_URL", f"smtp://127.0.0.1:{os.environ['TEST_SMTP_PORT']}")
os.environ.setdefault("EMAIL_TIMEOUT", "5")
os.environ.setdefault("PUBLIC_BASE_URL", "http://testserver")
# pytest-django's live server (the browser tests) listens on the loopback address, which ALLOWED_HOSTS names.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")
# Tests sign in many times a minute; the throttling test sets its own low rate.
os.environ.setdefault("THROTTLE_LOGIN", "10000/min")
os.environ.setdefault("THROTTLE_REGISTER", "10000/min")
# Tests queue many jobs at once (the fault tests fifty); the quota tests set per-user limits of their own.
os.environ.setdefault("QUOTA_ACTIVE_JOBS", "1000")
os.environ.setdefault("QUOTA_UPLOADS_PER_HOUR", "100000")
# /metrics and the workers' metrics ports answer this token (tests/metrics/, tests/fixtures/workers.py).
os.environ.setdefault("METRICS_TOKEN", secrets.token_urlsafe(50))

from mp3converter.settings import *  # noqa: E402,F401,F403

# Hashing passwords at full strength would dominate the suite's run time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
