"""Email verification, token revocation and per-user limits.

Accounts that existed before verification was required keep working: they count as verified.
"""

from django.db import migrations, models


def existing_accounts_are_verified(apps, schema_editor):
    apps.get_model("accounts", "User").objects.update(email_verified=True)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='user',
            name='email_verified',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name='user',
            name='quota_active_jobs',
            field=models.PositiveIntegerField(blank=True, help_text='Queued or processing jobs at once. Empty: QUOTA_ACTIVE_JOBS.', null=True),
        ),
        migrations.AddField(
            model_name='user',
            name='quota_storage_mb',
            field=models.PositiveIntegerField(blank=True, help_text='MB of stored sources and MP3s together. Empty: QUOTA_STORAGE_MB.', null=True),
        ),
        migrations.AddField(
            model_name='user',
            name='quota_uploads_per_hour',
            field=models.PositiveIntegerField(blank=True, help_text='Uploads in any hour. Empty: QUOTA_UPLOADS_PER_HOUR.', null=True),
        ),
        migrations.AddField(
            model_name='user',
            name='tokens_valid_after',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(existing_accounts_are_verified, migrations.RunPython.noop),
    ]
