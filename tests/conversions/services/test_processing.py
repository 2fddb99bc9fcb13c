"""conversions.services.processing: the conversion as the worker runs it, in-process, with the real ffmpeg and
real storages."""

import io
import uuid

import pytest
from django.core.files import File
from django.core.files.storage import default_storage

from conversions import engine
from conversions.models import Conversion
from conversions.services import (
    conversion_convert,
    conversion_delete,
)
from tests.conversions.services.helpers import mp3_files_of
from tests.factories import ConversionFactory
from tests.media import decoded_duration, probe_output

Status = Conversion.Status


# --- conversion_convert ----------------------------------------------------------------------------------------
def test_convert_makes_the_mp3(db, queued, tmp_path):
    conversion = queued("mp4_aac")
    conversion_convert(conversion_id=conversion.id)
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.DONE
    assert row.mp3.name == f"mp3/{row.id}-1.mp3"
    assert row.mp3_size == default_storage.size(row.mp3.name)
    assert row.duration_seconds == pytest.approx(2.0, abs=0.1)
    assert row.started_at is not None and row.finished_at >= row.started_at
    assert (row.error_code, row.error_message) == ("", "")
    local = tmp_path / "out.mp3"
    with default_storage.open(row.mp3.name) as mp3:
        local.write_bytes(mp3.read())
    assert probe_output(local)["audio"][0]["codec"] == "mp3"
    assert decoded_duration(local) == pytest.approx(2.0, abs=0.1)


def test_convert_again_on_a_done_job_does_nothing(db, queued):
    conversion = queued("wav")
    conversion_convert(conversion_id=conversion.id)
    name = Conversion.objects.get(pk=conversion.pk).mp3.name
    before = (default_storage.get_modified_time(name), default_storage.size(name))
    finished_at = Conversion.objects.get(pk=conversion.pk).finished_at

    conversion_convert(conversion_id=conversion.id)
    conversion_convert(conversion_id=str(conversion.id))
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.DONE
    assert row.finished_at == finished_at
    assert (default_storage.get_modified_time(name), default_storage.size(name)) == before
    assert mp3_files_of(conversion.id) == [f"{conversion.id}-1.mp3"]


def test_redelivered_job_replaces_a_half_stored_mp3(db, queued):
    # A worker died after storing the MP3 but before recording it; the message comes back with the job processing.
    conversion = queued("wav")
    default_storage.save(f"mp3/{conversion.id}-1.mp3", io.BytesIO(b"left over by a crashed attempt"))
    Conversion.objects.filter(pk=conversion.pk).update(status=Status.PROCESSING)

    conversion_convert(conversion_id=conversion.id)
    row = Conversion.objects.get(pk=conversion.pk)
    assert row.status == Status.DONE
    assert mp3_files_of(conversion.id) == [f"{conversion.id}-1.mp3"]
    assert row.mp3.name == f"mp3/{conversion.id}-1.mp3"
    assert default_storage.size(row.mp3.name) == row.mp3_size > 1000


def test_convert_of_a_deleted_job_stores_nothing(db, queued):
    conversion = queued("mp4_aac")
    Conversion.objects.filter(pk=conversion.pk).delete()
    conversion_convert(conversion_id=conversion.id)
    conversion_convert(conversion_id=uuid.uuid4())
    assert mp3_files_of(conversion.id) == []


def test_job_deleted_while_converting_leaves_no_mp3(db, queued, monkeypatch):
    conversion = queued("mp4_aac")
    real_convert = engine.convert

    def convert_then_user_deletes(*args, **kwargs):
        result = real_convert(*args, **kwargs)
        conversion_delete(conversion=Conversion.objects.get(pk=conversion.pk))  # the owner deletes it meanwhile
        return result

    monkeypatch.setattr(engine, "convert", convert_then_user_deletes)
    conversion_convert(conversion_id=conversion.id)
    assert not Conversion.objects.filter(pk=conversion.pk).exists()
    assert mp3_files_of(conversion.id) == []
    assert not default_storage.exists(conversion.source.name)


@pytest.mark.parametrize(
    ("spec", "code"), [("mp4_noaudio", "no_audio_stream"), ("truncated_faststart_mp4", "corrupt_media")]
)
def test_convert_of_bad_media_fails_the_job(storage, db, user, media, spec, code):
    # Made directly: conversion_create would already refuse a file without audio.
    conversion = ConversionFactory.build(owner=user, original_filename="x.mp4", options={"vbr_quality": 2})
    with media(spec, duration=6.0).open("rb") as source:
        conversion.source.save("x", File(source), save=False)
    conversion.save()
    try:
        conversion_convert(conversion_id=conversion.id)
        row = Conversion.objects.get(pk=conversion.pk)
        assert row.status == Status.FAILED
        assert row.error_code == code
        assert row.error_message
        assert not row.mp3
        assert mp3_files_of(conversion.id) == []
    finally:
        default_storage.delete(conversion.source.name)


