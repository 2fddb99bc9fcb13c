"""The database cache's table (the default cache, where sign-in throttle counts live), made by `migrate` itself.

So every way the schema is built (`make run`, the migrate Job, the tests' database) has it. `createcachetable`
makes the table of each database cache in CACHES and skips those that exist; with another cache (CACHE_URL=redis://…)
it does nothing. Run `manage.py createcachetable` after switching CACHE_URL to a database cache later.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_verification_tokens_quotas"),
    ]

    operations = [
        migrations.RunPython(create_cache_tables, migrations.RunPython.noop, elidable=False),
    ]
