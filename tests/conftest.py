"""The suite's fixtures, one plugin module per kind (tests/fixtures/); the slow ones are session-scoped.

Services the suite expects (started by tests/services.sh): MariaDB and RabbitMQ. Everything else is started by the
fixtures: the SMTP and S3 servers, Celery workers, media.
"""

import shutil

import pytest

pytest_plugins = [
    "tests.fixtures.media",
    "tests.fixtures.users",
    "tests.fixtures.mail",
    "tests.fixtures.services",
    "tests.fixtures.workers",
]


@pytest.fixture(scope="session", autouse=True)
def _remove_session_folders():
    """The media and static folders tests/settings.py made for this session go when it ends."""
    yield
    from django.conf import settings

    for folder in getattr(settings, "CREATED_TEMP_DIRS", []):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Throttle counters live in the cache; one test's sign-ins must not throttle the next test.
    from django.core.cache import cache

    cache.clear()
