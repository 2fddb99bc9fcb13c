"""Database statements timed, in every process: each new connection gets an execute wrapper that times its
statements and counts those that raise, with its labels bound once.

django-prometheus's database backends do the same by subclassing each backend, but make a new cursor class for every
cursor: about 20 µs a query on the test machine, against about 4 µs here. The job-status poll runs two queries.
"""

from time import perf_counter

from django.db.backends.signals import connection_created
from django.dispatch import receiver

from .instruments import db_connections, db_errors, db_query_duration

# Marks a connection that has the wrapper (a connection object may be reopened: connection_created fires again).
WRAPPED = "_mp3converter_metrics"


def statement_timer(alias: str, vendor: str):
    """The execute wrapper of one connection (Django's `connection.execute_wrapper` protocol)."""
    duration = db_query_duration.labels(alias, vendor)

    def timed(execute, sql, params, many, context):
        start = perf_counter()
        try:
            return execute(sql, params, many, context)
        except Exception as exc:
            db_errors.labels(alias, vendor, type(exc).__name__).inc()
            raise
        finally:
            duration.observe(perf_counter() - start)

    return timed


@receiver(connection_created, dispatch_uid="mp3converter.metrics.database")
def _time_statements(sender, connection, **kwargs) -> None:
    db_connections.labels(connection.alias, connection.vendor).inc()
    if not getattr(connection, WRAPPED, False):
        connection.execute_wrappers.insert(0, statement_timer(connection.alias, connection.vendor))
        setattr(connection, WRAPPED, True)
