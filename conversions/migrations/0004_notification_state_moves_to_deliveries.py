from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("conversions", "0003_redeliveries_notify_claim"),
        # The email state is copied to deliveries before these columns go.
        ("notifications", "0002_carry_over_email_state"),
    ]

    operations = [
        migrations.RemoveField(model_name="conversion", name="notified_at"),
        migrations.RemoveField(model_name="conversion", name="notify_started_at"),
        migrations.AlterField(
            model_name="conversion", name="error_code", field=models.CharField(blank=True, max_length=32)
        ),
    ]
