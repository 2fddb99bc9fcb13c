from django.db import migrations, models


class Migration(migrations.Migration):
    """The email state leaves the job model for notifications.Delivery.

    The columns stay in the database for one release: while old and new pods run side by side during an upgrade,
    the old ones still read and write them (docs/deploy.md, "Upgrading"). The next release's migration copies over
    what they wrote meanwhile and drops the columns.
    """

    dependencies = [
        ("conversions", "0003_redeliveries_notify_claim"),
        # The email state is copied to deliveries before the model lets go of it.
        ("notifications", "0002_carry_over_email_state"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="conversion", name="notified_at"),
                migrations.RemoveField(model_name="conversion", name="notify_started_at"),
            ],
            database_operations=[],
        ),
        migrations.AlterField(
            model_name="conversion", name="error_code", field=models.CharField(blank=True, max_length=32)
        ),
    ]
