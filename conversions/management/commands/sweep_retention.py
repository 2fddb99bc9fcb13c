"""`manage.py sweep_retention [--now 2026-01-01T00:00:00Z]`: one retention sweep by hand (conversions/services/
retention.py), for operators and tests, printing what it removed. The workers run the same sweep on their own timer;
this is for a look now, or at another moment (`--now`: the ages are measured from it)."""

import argparse
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from conversions.services import retention_sweep


def moment(value: str) -> datetime:
    """An ISO 8601 date and time; one with no offset is UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r} (e.g. 2026-01-01T00:00:00Z)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


class Command(BaseCommand):
    help = (
        "Remove the sources, MP3s and orphaned files that are due (SOURCE_RETENTION_HOURS, OUTPUT_RETENTION_DAYS, "
        "ORPHAN_GRACE_HOURS) and print what was removed."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--now", type=moment, default=None,
            help="Measure ages from this ISO 8601 time instead of the present, e.g. 2026-01-01T00:00:00Z (no offset: "
            "UTC).",
        )

    def handle(self, *args, now: datetime | None = None, **options):
        swept = retention_sweep(now=now)
        if swept.busy:
            raise CommandError("Another retention sweep is running, so this one did nothing. Try again once it ends.")
        for conversion_id in swept.sources:
            self.stdout.write(f"source removed, job stays done: {conversion_id}")
        for conversion_id in swept.expired:
            self.stdout.write(f"expired: {conversion_id}")
        for name in swept.files:
            self.stdout.write(f"removed {name}")
        for label in swept.orphans:
            self.stdout.write(f"removed orphan {label}")
        self.stdout.write(
            f"{len(swept.sources)} source(s) removed, {len(swept.expired)} job(s) expired, {len(swept.files)} file(s) "
            f"removed, {len(swept.orphans)} orphan(s) removed, {swept.uploads} expired upload(s) removed"
        )
