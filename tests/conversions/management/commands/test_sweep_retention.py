"""`manage.py sweep_retention --now <ISO time>`: one sweep by hand, printing what it removed."""

import io
import uuid
from datetime import UTC, timedelta

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from conversions.filenames import source_name
from conversions.models import Conversion
from conversions.services import retention
from tests.factories import DoneConversionFactory

pytestmark = [pytest.mark.django_db]


@pytest.fixture(autouse=True)
def folder(settings, tmp_path):
    """The command's files in a folder of its own."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }


def sweep(*args) -> list[str]:
    out = io.StringIO()
    call_command("sweep_retention", *args, stdout=out)
    return out.getvalue().splitlines()


def test_it_measures_ages_from_now_and_prints_what_it_removed(user):
    done = DoneConversionFactory(owner=user)
    ended = Conversion.objects.get(pk=done.pk).finished_at.astimezone(UTC)
    orphan = default_storage.save(source_name(uuid.uuid4()), ContentFile(b"video"))

    assert sweep("--now", (ended + timedelta(days=29)).isoformat()) == [
        f"removed orphan {orphan}",
        "0 source(s) removed, 0 job(s) expired, 0 file(s) removed, 1 orphan(s) removed, 0 expired upload(s) removed",
    ]
    assert Conversion.objects.get(pk=done.pk).status == Conversion.Status.DONE

    # The form operators type, with Z for UTC.
    assert sweep("--now", f"{ended + timedelta(days=31):%Y-%m-%dT%H:%M:%SZ}") == [
        f"expired: {done.id}",
        f"removed {done.mp3.name}",
        "0 source(s) removed, 1 job(s) expired, 1 file(s) removed, 0 orphan(s) removed, 0 expired upload(s) removed",
    ]
    assert Conversion.objects.get(pk=done.pk).status == Conversion.Status.EXPIRED
    assert not default_storage.exists(done.mp3.name)


def test_a_time_without_an_offset_is_utc(user):
    done = DoneConversionFactory(owner=user)
    ended = Conversion.objects.get(pk=done.pk).finished_at.astimezone(UTC)
    naive = (ended + timedelta(days=30, minutes=1)).replace(tzinfo=None)
    assert f"expired: {done.id}" in sweep("--now", naive.isoformat())


def test_without_now_it_measures_from_the_present(user):
    DoneConversionFactory(owner=user)
    assert sweep() == ["0 source(s) removed, 0 job(s) expired, 0 file(s) removed, 0 orphan(s) removed, 0 expired upload(s) removed"]


def test_a_bad_time_is_refused_with_an_example():
    with pytest.raises(CommandError, match="not an ISO 8601 time: 'yesterday'.*2026-01-01T00:00:00Z"):
        sweep("--now", "yesterday")


def test_it_does_nothing_while_another_sweep_runs(user):
    done = DoneConversionFactory(owner=user)
    cache.add(retention.LEASE_KEY, "another sweep", timeout=60)
    with pytest.raises(CommandError, match="Another retention sweep is running"):
        sweep("--now", "2100-01-01T00:00:00Z")
    assert Conversion.objects.get(pk=done.pk).status == Conversion.Status.DONE
