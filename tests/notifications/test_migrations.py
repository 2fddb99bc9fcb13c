"""The migration that moves the email state off the job: jobs already notified stay notified, an email being sent
stays claimed, the old columns stay for the pods of the release before, and going back restores them. Run on the
real database, from the schema before it."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

LAST_BEFORE = ("conversions", "0003_redeliveries_notify_claim")
BEFORE = [LAST_BEFORE, ("notifications", None)]


def migrate(targets):
    """Migrate the test database to `targets`; the models as they are there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state([LAST_BEFORE] if targets == BEFORE else targets).apps


@pytest.fixture
def migrator(transactional_db):
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    yield migrate
    migrate(latest)  # leave the schema as every other test expects it


def test_email_state_carries_over_to_deliveries_and_back(migrator):
    old = migrator(BEFORE)
    owner = old.get_model("accounts", "User").objects.create(email="owner@example.com", password="x")
    jobs = old.get_model("conversions", "Conversion").objects
    sent_at = timezone.now() - timedelta(days=1)
    claimed_at = timezone.now() - timedelta(minutes=1)
    notified = jobs.create(owner=owner, original_filename="a.mp4", status="done", attempt=2,
                           notify_started_at=sent_at - timedelta(seconds=1), notified_at=sent_at)
    sending = jobs.create(owner=owner, original_filename="b.mp4", status="failed", notify_started_at=claimed_at)
    jobs.create(owner=owner, original_filename="c.mp4", status="done")  # its email not begun yet: nothing to carry

    new = migrator(MigrationExecutor(connection).loader.graph.leaf_nodes())
    deliveries = new.get_model("notifications", "Delivery").objects
    carried = {
        delivery.conversion_id: (delivery.channel, delivery.attempt, delivery.state, delivery.delivered_at,
                                 delivery.claimed_at)
        for delivery in deliveries.all()
    }
    assert carried == {
        notified.id: ("email", 2, "delivered", sent_at, sent_at - timedelta(seconds=1)),
        sending.id: ("email", 1, "claimed", None, claimed_at),
    }
    fields = {field.name for field in new.get_model("conversions", "Conversion")._meta.get_fields()}
    assert not fields & {"notified_at", "notify_started_at"}
    # The columns stay for this release: old pods still read them while an upgrade rolls out.
    with connection.cursor() as cursor:
        columns = {column.name for column in connection.introspection.get_table_description(cursor, "conversions_conversion")}
    assert {"notified_at", "notify_started_at"} <= columns
    made = new.get_model("conversions", "Conversion").objects.create(owner_id=owner.pk, original_filename="d.mp4")
    assert made.pk  # the new model writes rows without them

    back = migrator(BEFORE)
    rows = {job.id: (job.notified_at, job.notify_started_at) for job in back.get_model("conversions", "Conversion").objects.all()}
    assert rows[notified.id] == (sent_at, sent_at - timedelta(seconds=1))
    assert rows[sending.id] == (None, claimed_at)


def test_deliveries_of_before_get_when_their_message_is_due(migrator):
    old = migrator([("notifications", "0002_carry_over_email_state")])
    owner = old.get_model("accounts", "User").objects.create(email="due@example.com", password="x")
    job = old.get_model("conversions", "Conversion").objects.create(owner=owner, original_filename="a.mp4",
                                                                    status="done")
    deliveries = old.get_model("notifications", "Delivery").objects
    claimed_at = timezone.now() - timedelta(minutes=1)
    pending = deliveries.create(conversion=job, channel="email", attempt=1, state="pending")
    claimed = deliveries.create(conversion=job, channel="email", attempt=2, state="claimed", claimed_at=claimed_at)
    delivered = deliveries.create(conversion=job, channel="email", attempt=3, state="delivered")

    new = migrator(MigrationExecutor(connection).loader.graph.leaf_nodes())
    due = {row.pk: row.next_try_at for row in new.get_model("notifications", "Delivery").objects.all()}
    assert due[pending.pk] == deliveries.get(pk=pending.pk).updated_at
    assert due[claimed.pk] == claimed_at + timedelta(minutes=5)  # when its claim expires
    assert due[delivered.pk] is None
