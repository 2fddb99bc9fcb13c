"""Database statements timed on every connection, those that raise counted by type, new connections counted."""

import pytest
from django.db import DatabaseError, connection, connections

from mp3converter.metrics.database import WRAPPED
from tests.metrics.helpers import samples, total, value


def scraped() -> dict:
    from prometheus_client import generate_latest

    from mp3converter.metrics import instruments

    return samples(generate_latest(instruments.registry).decode())


def labels() -> dict[str, str]:
    return {"alias": connection.alias, "vendor": connection.vendor}


@pytest.mark.django_db
def test_each_statement_is_timed_and_each_failed_one_counted_by_type():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # connects first, if this test is the first to ask
    before = scraped()
    with connection.cursor() as cursor:
        for _ in range(3):
            cursor.execute("SELECT 1")
        with pytest.raises(DatabaseError):
            cursor.execute("SELECT * FROM no_such_table_here")
    after = scraped()
    count = "mp3converter_db_query_duration_seconds_count"
    assert value(after, count, **labels()) - value(before, count, **labels()) == 4
    errors = "mp3converter_db_errors_total"
    failed = total(after, errors, **labels()) - total(before, errors, **labels())
    assert failed == 1
    # One wrapper per connection, however often it connected.
    assert getattr(connection, WRAPPED) is True
    assert sum(1 for wrapper in connection.execute_wrappers if wrapper.__name__ == "timed") == 1


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_is_counted_and_timed_from_its_first_statement():
    before = scraped()
    connections.close_all()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    after = scraped()
    opened = "mp3converter_db_connections_total"
    assert value(after, opened, **labels()) - value(before, opened, **labels()) == 1
    assert sum(1 for wrapper in connection.execute_wrappers if wrapper.__name__ == "timed") == 1
