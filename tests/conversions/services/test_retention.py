"""The retention sweep (conversions/services/retention.py), with its clock given (`now`, as `manage.py sweep_retention
--now` gives it): each rule on its day and not before, the files of live rows never touched, orphans in each store
(the folder, GridFS: mongomock's or MONGODB_URI's, S3: moto's), two sweeps at once and a retry racing one."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connections
from django.utils import timezone

from conversions import engine
from conversions.filenames import output_name, source_name, track_name
from conversions.models import Conversion, ResumableUpload, Track
from conversions.selectors import conversion_usage
from conversions.services import (
    conversion_retry,
    conversions_expire,
    resumable_upload_append,
    resumable_upload_create,
    retention_sweep,
    retention_sweep_due,
    stored_orphans_remove,
)
from conversions.services import lifecycle, retention
from conversions.storage.resumable import resumable_store
from mp3converter.errors import ConversionExpired
from tests.factories import ConversionFactory, UserFactory
from tests.utils import wait_for

Status = Conversion.Status
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@pytest.fixture
def folder(settings, tmp_path):
    """This test's files in a folder of its own."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    assert isinstance(default_storage, FileSystemStorage)
    return "folder"


def stored(name: str) -> bool:
    return default_storage.exists(name)


def job(owner, *, status=Status.DONE, ended=None, source=True, mp3=False, tracks=0, attempt=1) -> Conversion:
    """A job row with its files really stored; `ended`: its finished_at."""
    conversion = ConversionFactory(owner=owner, status=status, attempt=attempt, source_size=5)
    fields = {"finished_at": ended}
    if source:
        fields["source"] = default_storage.save(source_name(conversion.id), ContentFile(b"video"))
    if mp3:
        fields.update(mp3=default_storage.save(output_name(conversion.id, attempt), ContentFile(b"ID3")), mp3_size=3)
    for number in range(1, tracks + 1):
        name = default_storage.save(track_name(conversion.id, attempt, number), ContentFile(b"ID3"))
        Track.objects.create(conversion=conversion, number=number, title=f"Chapter {number}", start_seconds=number,
                             duration_seconds=1, mp3=name, size=3)
    if tracks:
        fields["options"] = {"split": "chapters"}
    Conversion.objects.filter(pk=conversion.pk).update(**fields)
    return Conversion.objects.get(pk=conversion.pk)


def row(conversion: Conversion) -> Conversion:
    return Conversion.objects.get(pk=conversion.pk)


# --- the rules ---------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_done_jobs_source_goes_source_retention_hours_after_it_ended_and_the_job_stays_done(folder, user):
    ended = timezone.now()
    done = job(user, ended=ended, mp3=True)

    assert not conversions_expire(now=ended + 23 * HOUR)
    assert row(done).source.name == done.source.name and stored(done.source.name)

    swept = conversions_expire(now=ended + 25 * HOUR)
    assert (swept.sources, swept.expired, swept.files) == ([done.id], [], [done.source.name])
    after = row(done)
    assert (after.status, after.source.name, after.mp3.name) == (Status.DONE, "", done.mp3.name)
    assert not stored(done.source.name) and stored(done.mp3.name)
    assert not conversions_expire(now=ended + 26 * HOUR)  # nothing twice


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.FAILED, Status.CANCELLED])
def test_a_failed_or_cancelled_job_keeps_its_source_for_a_retry_until_then_and_then_expires(
    folder, user, status, monkeypatch
):
    monkeypatch.setattr(lifecycle, "conversion_enqueue", lambda **kwargs: None)
    ended = timezone.now()
    kept, expiring = job(user, status=status, ended=ended), job(user, status=status, ended=ended - 2 * HOUR)

    swept = conversions_expire(now=ended + 23 * HOUR)
    assert (swept.expired, swept.files) == ([expiring.id], [expiring.source.name])
    assert stored(kept.source.name) and not stored(expiring.source.name)
    after = row(expiring)
    assert (after.status, after.source.name) == (Status.EXPIRED, "")
    assert after.original_filename == expiring.original_filename and after.error_code == expiring.error_code

    assert conversion_retry(conversion=kept)  # still within its time: a retry works on its source
    assert row(kept).status == Status.QUEUED and stored(kept.source.name)
    with pytest.raises(ConversionExpired, match="can no longer be retried"):
        conversion_retry(conversion=expiring)
    assert row(expiring).status == Status.EXPIRED


@pytest.mark.django_db
def test_an_mp3_goes_output_retention_days_after_the_job_was_done_and_the_job_expires(folder, user):
    ended = timezone.now()
    single = job(user, ended=ended, source=False, mp3=True)
    split = job(user, ended=ended, source=False, tracks=2)
    track_names = [track.mp3.name for track in split.tracks.all()]

    assert not conversions_expire(now=ended + 29 * DAY)
    swept = conversions_expire(now=ended + 31 * DAY)
    assert sorted(swept.expired) == sorted([single.id, split.id])
    assert sorted(swept.files) == sorted([single.mp3.name, *track_names])
    for name in (single.mp3.name, *track_names):
        assert not stored(name)
    for conversion in (row(single), row(split)):
        assert (conversion.status, conversion.mp3.name, conversion.source.name) == (Status.EXPIRED, "", "")
    assert not Track.objects.exists()
    # What the job was stays: its name, size and duration.
    assert (row(single).original_filename, row(single).mp3_size) == (single.original_filename, 3)


@pytest.mark.django_db
def test_an_expired_job_keeps_its_source_no_longer_than_its_mp3(folder, user, settings):
    settings.SOURCE_RETENTION_HOURS, settings.OUTPUT_RETENTION_DAYS = 100 * 24, 1
    ended = timezone.now()
    done = job(user, ended=ended, mp3=True)
    assert conversions_expire(now=ended + 2 * DAY).expired == [done.id]
    assert not stored(done.source.name) and not stored(done.mp3.name)


@pytest.mark.django_db
def test_output_retention_days_0_keeps_mp3s_forever(folder, user, settings):
    settings.OUTPUT_RETENTION_DAYS = 0
    ended = timezone.now()
    done = job(user, ended=ended, mp3=True)
    swept = conversions_expire(now=ended + 3650 * DAY)
    assert (swept.sources, swept.expired) == ([done.id], [])
    assert row(done).status == Status.DONE and stored(done.mp3.name)


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.QUEUED, Status.FETCHING, Status.PROCESSING])
def test_an_active_jobs_files_are_never_touched(folder, user, status):
    # However old it is, and whatever a worker of it may be about to store: an MP3 its row does not name yet.
    active = job(user, status=status, ended=None)
    coming = default_storage.save(output_name(active.id, 1), ContentFile(b"ID3"))
    swept = retention_sweep(now=timezone.now() + 3650 * DAY)
    assert not swept and not swept.busy
    assert row(active).status == status and stored(active.source.name) and stored(coming)


@pytest.mark.django_db
def test_what_the_account_stores_shrinks_with_what_was_removed(folder, user):
    ended = timezone.now()
    job(user, ended=ended, mp3=True)
    assert conversion_usage(user=user).storage_bytes == 5 + 3
    conversions_expire(now=ended + 2 * DAY)
    assert conversion_usage(user=user).storage_bytes == 3  # the source is gone
    conversions_expire(now=ended + 31 * DAY)
    assert conversion_usage(user=user).storage_bytes == 0


# --- orphans -----------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_orphans_go_after_the_grace_period_and_what_rows_and_uploads_need_stays(store, user):
    now = timezone.now()
    # An upload in progress, and the bytes of one whose row is gone. (First: mongomock's GridFS would make the chunks'
    # index without the uniqueness the resumable store asks for, where MongoDB's makes it unique.)
    live = resumable_upload_create(owner=user, length=10, filename="clip.mp4", options=engine.OutputOptions())
    resumable_upload_append(upload=live, offset=0, chunks=[b"12345"], declared=5)
    dead = resumable_store().begin(upload_id=uuid.uuid4(), name=source_name(uuid.uuid4()))
    dead = resumable_store().append(state=dead, offset=0, length=10, chunks=[b"12345"]).state
    lost = uuid.uuid4()  # a job whose row was never written: its upload died after storing the source
    orphans = {
        default_storage.save(source_name(lost), ContentFile(b"video")),
        default_storage.save(track_name(lost, 1, 1), ContentFile(b"ID3")),
    }
    done = job(user, ended=now, mp3=True, attempt=2)
    # An earlier attempt's MP3 that its worker stored before it died: the row names attempt 2's.
    orphans.add(default_storage.save(output_name(done.id, 1), ContentFile(b"ID3")))
    if store == "folder":  # its partial uploads are files
        orphans.add(dead["partial"])
    if store == "s3":  # what a request leaves below a part's size waits in a small object
        orphans.add(dead["tail"].split("/", 1)[1])

    # Within the grace period nothing goes: the file may be about to get its row. (moto says every multipart upload
    # began on 2010-11-10, so there the dead one is old at once.)
    early = stored_orphans_remove(now=now + 23 * HOUR).orphans
    assert [label for label in early if not (store == "s3" and "unfinished upload" in label)] == []
    assert all(stored(name) for name in orphans)

    swept = stored_orphans_remove(now=now + 25 * HOUR)
    unfinished = [label for label in early + swept.orphans if "unfinished upload" in label]
    assert set(swept.orphans) - set(unfinished) == orphans
    assert not any(stored(name) for name in orphans)
    if store == "folder":
        assert not unfinished
    else:  # GridFS chunks with no file, an S3 multipart upload: the dead upload's, not the live one's
        assert len(unfinished) == 1 and (dead.get("file_id") or dead["upload_id"]) in unfinished[0]
    assert stored(done.source.name) and stored(done.mp3.name)
    # The live upload's bytes are whole: it completes into the file it was sent as.
    state = ResumableUpload.objects.get(pk=live.pk).store_state
    state = resumable_store().append(state=state, offset=5, length=10, chunks=[b"67890"]).state
    resumable_store().complete(state=state, length=10, name=source_name(live.conversion_id))
    with default_storage.open(source_name(live.conversion_id), "rb") as complete:
        assert complete.read() == b"1234567890"
    default_storage.delete(source_name(live.conversion_id))


@pytest.mark.django_db
def test_a_file_whose_removal_failed_is_removed_by_the_orphan_scan(folder, user, monkeypatch):
    ended = timezone.now()
    done = job(user, ended=ended, mp3=True)

    def refuse(name):
        raise OSError("read-only file system")

    with monkeypatch.context() as patched:
        patched.setattr(FileSystemStorage, "delete", lambda self, name: refuse(name))
        swept = conversions_expire(now=ended + 2 * DAY)
    assert swept.sources == [done.id] and swept.files == []
    assert row(done).source.name == "" and stored(done.source.name)  # no row names it any more
    assert stored_orphans_remove(now=ended + 2 * DAY).orphans == [done.source.name]
    assert not stored(done.source.name)


# --- the sweep: one at a time, and when the workers' timer has one run -------------------------------------------
@pytest.mark.django_db
def test_a_sweep_does_nothing_while_another_holds_the_lease(folder, user):
    ended = timezone.now()
    done = job(user, ended=ended, mp3=True)
    cache.add(retention.LEASE_KEY, "another sweep", timeout=60)
    swept = retention_sweep(now=ended + 31 * DAY)
    assert swept.busy and not swept
    assert row(done).status == Status.DONE and stored(done.mp3.name)
    assert cache.get(retention.LEASE_KEY) == "another sweep"  # not released by the sweep that did not hold it
    cache.delete(retention.LEASE_KEY)
    assert retention_sweep(now=ended + 31 * DAY).expired == [done.id]
    assert cache.get(retention.LEASE_KEY) is None


@pytest.mark.django_db
def test_the_timers_sweep_is_due_once_per_interval(folder):
    assert retention_sweep_due()
    assert not retention_sweep_due()  # published, waiting in the queue
    assert not retention_sweep(scheduled=True).busy
    assert not retention_sweep_due()  # ran: not due for RETENTION_SWEEP_MINUTES
    assert not retention_sweep(scheduled=True)  # a second one published meanwhile does nothing
    cache.delete(retention.LAST_SWEEP_KEY)
    assert retention_sweep_due()


# --- at once, on separate connections ----------------------------------------------------------------------------
def run_at_once(*calls):
    """Run each call in a thread of its own (its own database connection), started together; their results."""
    barrier, results, errors = threading.Barrier(len(calls)), [None] * len(calls), []

    def run(index, call):
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:  # the test fails on it below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


@pytest.fixture
def deletions(monkeypatch):
    """Every name the folder store is asked to delete, from any thread."""
    names, lock = [], threading.Lock()
    original = FileSystemStorage.delete

    def delete(self, name):
        with lock:
            names.append(name)
        original(self, name)

    monkeypatch.setattr(FileSystemStorage, "delete", delete)
    return names


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_move_each_job_and_remove_each_file_once(folder, deletions):
    owner, ended = UserFactory(), timezone.now()
    done = [job(owner, ended=ended, mp3=True) for _ in range(15)]
    failed = [job(owner, status=Status.FAILED, ended=ended) for _ in range(15)]
    split = [job(owner, ended=ended, source=False, tracks=2) for _ in range(5)]
    files = {name for conversion in done + failed for name in (conversion.source.name, conversion.mp3.name) if name}
    files |= set(Track.objects.values_list("mp3", flat=True))
    deletions.clear()

    now = ended + 31 * DAY
    first, second = run_at_once(lambda: conversions_expire(now=now), lambda: conversions_expire(now=now))
    assert not set(first.expired) & set(second.expired)
    assert sorted(first.expired + second.expired) == sorted(c.id for c in done + failed + split)
    assert sorted(deletions) == sorted(files)  # each file once
    assert sorted(first.files + second.files) == sorted(files)
    assert set(Conversion.objects.values_list("status", flat=True)) == {Status.EXPIRED}
    assert not Track.objects.exists() and not any(stored(name) for name in files)


@pytest.mark.django_db(transaction=True)
def test_two_whole_sweeps_at_once_remove_each_file_once(folder, deletions):
    owner, ended = UserFactory(), timezone.now()
    done = [job(owner, ended=ended, mp3=True) for _ in range(10)]
    orphan = default_storage.save(source_name(uuid.uuid4()), ContentFile(b"video"))
    deletions.clear()
    # The suite's own workers publish sweeps on their timer: none of theirs may hold the lease meanwhile.
    cache.set(retention.LAST_SWEEP_KEY, "held off by the test", timeout=600)
    wait_for(lambda: cache.get(retention.LEASE_KEY) is None, timeout=60, message="the lease to be free")

    now = ended + 31 * DAY
    first, second = run_at_once(lambda: retention_sweep(now=now), lambda: retention_sweep(now=now))
    # Usually one finds the other holding the lease; should one end before the other begins, the second finds
    # nothing left. Either way each job expires once and each file goes once.
    assert not (first.busy and second.busy)
    assert sorted(first.expired + second.expired) == sorted(c.id for c in done)
    assert first.orphans + second.orphans == [orphan]
    assert sorted(deletions) == sorted([orphan, *(n for c in done for n in (c.source.name, c.mp3.name))])


@pytest.mark.django_db(transaction=True)
def test_a_retry_racing_the_sweep_either_keeps_the_source_or_finds_the_job_expired(folder, monkeypatch):
    monkeypatch.setattr(lifecycle, "conversion_enqueue", lambda **kwargs: None)  # nothing is published
    owner, ended = UserFactory(), timezone.now()
    failed = [job(owner, status=Status.FAILED, ended=ended) for _ in range(30)]

    def retry_all():
        answers = {}
        for conversion in reversed(failed):  # from the other end than the sweep, so they meet half-way
            try:
                answers[conversion.id] = conversion_retry(conversion=conversion)
            except ConversionExpired:
                answers[conversion.id] = "expired"
        return answers

    answers, swept = run_at_once(retry_all, lambda: conversions_expire(now=ended + 25 * HOUR))
    for conversion in failed:
        after = row(conversion)
        if conversion.id in swept.expired:
            assert answers[conversion.id] == "expired" and after.status == Status.EXPIRED
            assert not stored(conversion.source.name)
        else:  # the retry won: the queued job has its source
            assert answers[conversion.id] is True and after.status == Status.QUEUED
            assert after.source.name == conversion.source.name and stored(conversion.source.name)


@pytest.mark.django_db
def test_uploads_rows_protect_their_source_name_until_they_go(folder, user):
    upload = resumable_upload_create(owner=user, length=10, filename="clip.mp4", options=engine.OutputOptions())
    # A process that died between assembling the file and admitting it: the upload's row still holds the name.
    assembled = default_storage.save(source_name(upload.conversion_id), ContentFile(b"video"))
    later = timezone.now() + 30 * DAY
    assert assembled not in stored_orphans_remove(now=later).orphans
    ResumableUpload.objects.all().delete()
    assert assembled in stored_orphans_remove(now=later).orphans


@pytest.mark.django_db
def test_unfinished_uploads_go_with_their_bytes_once_expired(folder, user, settings):
    # Here rather than in the reconciler's run: the sweep runs on the fetch role, which holds the store's credentials.
    def upload():
        started = resumable_upload_create(owner=user, length=10, filename="clip.mp4", options=engine.OutputOptions())
        resumable_upload_append(upload=started, offset=0, chunks=[b"12345"], declared=5)
        return ResumableUpload.objects.get(pk=started.pk)

    old, recent = upload(), upload()
    ResumableUpload.objects.filter(pk=old.pk).update(expires_at=timezone.now() + HOUR)
    ResumableUpload.objects.filter(pk=recent.pk).update(expires_at=timezone.now() + 3 * HOUR)
    assert stored(old.store_state["partial"]) and stored(recent.store_state["partial"])

    assert retention_sweep(now=timezone.now() + HOUR / 2).uploads == 0
    swept = retention_sweep(now=timezone.now() + 2 * HOUR)
    assert swept.uploads == 1 and bool(swept)
    assert list(ResumableUpload.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not stored(old.store_state["partial"]) and stored(recent.store_state["partial"])
