"""When each delivery's message is next due, so the reconciler can tell a delivery waiting for its backoff (or for a
live claim to expire) from one whose message was lost. Rows of before it: a pending one was due when last written,
a claimed one when its claim expires (five minutes, as CLAIM_TIMEOUT), a settled one never again."""

from datetime import timedelta

import django.utils.timezone
from django.db import migrations, models
from django.db.models import F

CLAIM_TIMEOUT = timedelta(minutes=5)


def forwards(apps, schema_editor):
    Delivery = apps.get_model("notifications", "Delivery")
    Delivery.objects.filter(state="pending").update(next_try_at=F("updated_at"))
    Delivery.objects.filter(state="claimed").update(next_try_at=F("claimed_at") + CLAIM_TIMEOUT)
    Delivery.objects.filter(state__in=["delivered", "failed"]).update(next_try_at=None)


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0002_carry_over_email_state"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="next_try_at",
            field=models.DateTimeField(blank=True, default=django.utils.timezone.now, null=True),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
