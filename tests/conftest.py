"""The suite's fixtures, one plugin module per kind (tests/fixtures/); the slow ones are session-scoped.

Services the suite expects (started by tests/services.sh): MariaDB and RabbitMQ. Everything else is started by the
fixtures: the SMTP and S3 servers, a local HTTP server for URL imports, Celery workers, media.
"""

import shutil

import pytest

pytest_plugins = [
    "tests.fixtures.media",
    "tests.fixtures.users",
    "tests.fixtures.mail",
    "tests.fixtures.services",
    "tests.fixtures.workers",
    "tests.fixtures.remote",
    "tests.fixtures.receiver",
]


@pytest.fixture(scope="session", autouse=True)
def _remove_session_folders():
    """The media and static folders tests/settings.py made for this session go when it ends."""
    yield
    from django.conf import settings

    for folder in getattr(settings, "CREATED_TEMP_DIRS", []):
        shutil.rmtree(folder, ignore_errors=True)


DATABASE_FIXTURES = {"db", "transactional_db", "live_server", "django_db_reset_sequences", "django_db_serialized_rollback"}


@pytest.fixture(autouse=True)
def _fresh_cache(request):
    # Throttle counters live in the cache, which is the database's by default: a test that uses the database starts
    # with none (one test's sign-ins must not throttle the next); a test without it cannot reach that cache anyway.
    if not (DATABASE_FIXTURES & set(request.fixturenames) or request.node.get_closest_marker("django_db")):
        return
    request.getfixturevalue("db")  # the database access the test asked for, set up now (pytest-django decides which)
    from django.core.cache import cache

    cache.clear()
