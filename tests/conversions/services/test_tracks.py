"""split=chapters in the services: the worker stores one file per chapter and the job's Track rows together with its
move to done; a redelivery, a retry, a storage failure part-way and a deletion leave no duplicate and no orphan."""

import pytest
from django.core.files.storage import default_storage

from conversions import engine
from conversions.models import Conversion, Track
from conversions.services import conversion_convert, conversion_delete, conversion_retry, lifecycle, processing
from conversions.services import conversion_create
from tests.conversions.services.helpers import stored, uploaded

Status = Conversion.Status


def track_files_of(conversion_id) -> list[str]:
    return sorted(f"tracks/{name}" for name in stored("tracks") if name.startswith(str(conversion_id)))


@pytest.fixture
def split_job(db, user, chaptered_media):
    with uploaded(chaptered_media) as upload:
        conversion = conversion_create(
            owner=user, upload=upload, options=engine.OutputOptions(split="chapters", title="Notes")
        )
    yield conversion
    default_storage.delete(conversion.source.name)
    for name in track_files_of(conversion.id):
        default_storage.delete(name)


def test_the_worker_stores_each_track_with_its_row(split_job):
    conversion_convert(conversion_id=split_job.id)
    row = Conversion.objects.get(pk=split_job.pk)
    assert (row.status, row.mp3.name) == (Status.DONE, "")
    tracks = list(row.tracks.all())
    assert [(t.number, t.title) for t in tracks] == [(1, "Intro"), (2, "Part: Two / Middle"), (3, "Chapter 3")]
    assert [t.mp3.name for t in tracks] == [f"tracks/{row.id}-1-00{n}.mp3" for n in (1, 2, 3)]
    assert track_files_of(row.id) == [t.mp3.name for t in tracks]
    assert [t.size for t in tracks] == [default_storage.size(t.mp3.name) for t in tracks]
    assert row.mp3_size == sum(t.size for t in tracks)
    assert row.duration_seconds == pytest.approx(6.0, abs=0.1)


def test_a_redelivered_message_replaces_the_tracks_rather_than_adding_to_them(split_job):
    conversion_convert(conversion_id=split_job.id)
    # As if the worker died after its commit and the broker handed the message to another one.
    Conversion.objects.filter(pk=split_job.pk).update(status=Status.PROCESSING)
    conversion_convert(conversion_id=split_job.id, attempt=1, redelivered=True)
    assert Conversion.objects.get(pk=split_job.pk).status == Status.DONE
    assert Track.objects.filter(conversion=split_job).count() == 3
    assert len(track_files_of(split_job.id)) == 3


def test_a_retry_removes_the_earlier_attempts_tracks(split_job, django_capture_on_commit_callbacks, monkeypatch):
    conversion_convert(conversion_id=split_job.id)
    names = track_files_of(split_job.id)
    Conversion.objects.filter(pk=split_job.pk).update(status=Status.FAILED)
    queued = []
    monkeypatch.setattr(lifecycle, "conversion_enqueue", lambda **job: queued.append(job))
    with django_capture_on_commit_callbacks(execute=True):
        assert conversion_retry(conversion=split_job)
    assert queued == [{"conversion_id": split_job.pk, "attempt": 2, "fetch": False}]
    assert Track.objects.filter(conversion=split_job).count() == 0
    assert not any(default_storage.exists(name) for name in names)


def test_a_storage_failure_part_way_keeps_no_track(split_job, monkeypatch):
    store = processing.store_replacing
    calls = []

    def fails_on_the_second(path, name):
        calls.append(name)
        if len(calls) == 2:
            raise OSError("the file store went away")
        return store(path, name)

    monkeypatch.setattr(processing, "store_replacing", fails_on_the_second)
    with pytest.raises(OSError):
        conversion_convert(conversion_id=split_job.id)
    assert track_files_of(split_job.id) == []
    assert Track.objects.filter(conversion=split_job).count() == 0
    assert Conversion.objects.get(pk=split_job.pk).status == Status.PROCESSING  # the task's retry takes it from here


def test_deleting_a_split_job_removes_its_tracks(split_job):
    conversion_convert(conversion_id=split_job.id)
    assert len(track_files_of(split_job.id)) == 3
    conversion_delete(conversion=Conversion.objects.get(pk=split_job.pk))
    assert track_files_of(split_job.id) == []
    assert not default_storage.exists(split_job.source.name)
