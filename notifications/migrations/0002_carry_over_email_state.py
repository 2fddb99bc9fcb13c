"""Carry the email state that lived on the job (`notified_at`, `notify_started_at`) over to deliveries: a job
already notified stays notified, and an email a worker was sending stays claimed (its claim expires as before)."""

from django.db import migrations

EMAIL = "email"


def forwards(apps, schema_editor):
    Conversion = apps.get_model("conversions", "Conversion")
    Delivery = apps.get_model("notifications", "Delivery")
    emailed = Conversion.objects.exclude(notified_at=None) | Conversion.objects.exclude(notify_started_at=None)
    batch = []
    for job in emailed.only("id", "attempt", "notified_at", "notify_started_at").iterator(chunk_size=2000):
        batch.append(
            Delivery(
                conversion_id=job.id, channel=EMAIL, attempt=job.attempt, tries=1,
                state="delivered" if job.notified_at is not None else "claimed",
                claimed_at=job.notify_started_at or job.notified_at, delivered_at=job.notified_at,
            )
        )
        if len(batch) >= 2000:
            Delivery.objects.bulk_create(batch)
            batch = []
    Delivery.objects.bulk_create(batch)


def backwards(apps, schema_editor):
    Conversion = apps.get_model("conversions", "Conversion")
    Delivery = apps.get_model("notifications", "Delivery")
    for delivery in Delivery.objects.filter(channel=EMAIL).iterator(chunk_size=2000):
        jobs = Conversion.objects.filter(pk=delivery.conversion_id, attempt=delivery.attempt)
        if delivery.state == "delivered":
            jobs.update(notified_at=delivery.delivered_at, notify_started_at=delivery.claimed_at)
        elif delivery.state == "claimed":
            jobs.update(notify_started_at=delivery.claimed_at)


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0001_initial"),
        ("conversions", "0003_redeliveries_notify_claim"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
