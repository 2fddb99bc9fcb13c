"""conversions.zips: a user's done MP3s as one ZIP, streamed from the file storage (a folder, or S3 here)."""

import io
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.utils import timezone

from conversions.models import Conversion
from conversions.zips import ZIP_CHUNK_SIZE, ZIP_MAX_CONVERSIONS, conversions_zip, tracks_zip, zip_entry_names
from mp3converter.errors import ErrorCode, InvalidRequest, InvalidState, NotFound
from tests.factories import ConversionFactory, UserFactory
from tests.media import probe_output

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored():
    """Makes jobs with their MP3 really stored; removes the stored files afterwards."""
    made: list[Conversion] = []

    def make(owner, *, mp3: bytes | None = None, status: str = "done", name: str = "clip.mp4") -> Conversion:
        conversion = ConversionFactory.build(owner=owner, original_filename=name, status=status)
        if status == "done":
            conversion.finished_at = timezone.now()
        if mp3 is not None:
            conversion.mp3.save("ignored.mp3", ContentFile(mp3), save=False)
            conversion.mp3_size = len(mp3)
        conversion.save()
        made.append(conversion)
        return conversion

    yield make
    for conversion in made:
        if conversion.mp3:
            conversion.mp3.storage.delete(conversion.mp3.name)


@pytest.fixture
def two_mp3s(media) -> tuple[bytes, bytes]:
    """Two different real MP3s, made with ffmpeg."""
    return media("mp3").read_bytes(), media("mp3", duration=3.0).read_bytes()


def unzip(archive) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(archive)))


def test_a_zip_holds_each_mp3_stored_under_its_download_name(user, stored, two_mp3s, tmp_path):
    first = stored(user, mp3=two_mp3s[0], name="holiday.mp4")
    second = stored(user, mp3=two_mp3s[1], name="Concert 2024.mkv")
    filename, archive = conversions_zip(user=user, conversion_ids=[str(first.id), second.id])

    assert filename.startswith("mp3s-") and filename.endswith("Z.zip")
    made_at = datetime.strptime(filename, "mp3s-%Y%m%dT%H%M%SZ.zip").replace(tzinfo=UTC)
    assert abs((timezone.now() - made_at).total_seconds()) < 60
    assert archive.sized
    body = b"".join(archive)
    assert len(body) == len(archive)  # what Content-Length will say
    with zipfile.ZipFile(io.BytesIO(body)) as unpacked:
        assert unpacked.testzip() is None  # every CRC checks out
        assert unpacked.namelist() == ["holiday.mp3", "Concert 2024.mp3"]
        for info in unpacked.infolist():
            assert info.compress_type == zipfile.ZIP_STORED  # MP3 does not compress
        assert unpacked.read("holiday.mp3") == two_mp3s[0]
        assert unpacked.read("Concert 2024.mp3") == two_mp3s[1]
        for name in unpacked.namelist():
            (tmp_path / name).write_bytes(unpacked.read(name))
            info = probe_output(tmp_path / name)
            assert info["format"] == "mp3" and info["audio"][0]["codec"] == "mp3", name


def test_duplicate_names_get_a_number_and_each_job_goes_in_once(user, stored, two_mp3s):
    jobs = [stored(user, mp3=two_mp3s[i % 2], name=name)
            for i, name in enumerate(["clip.mp4", "clip.mkv", "CLIP.webm", "clip (2).mp4"])]
    ids = [job.id for job in jobs]
    # The first id again, and written another way: still one entry.
    _, archive = conversions_zip(user=user, conversion_ids=[*ids, ids[0], str(ids[0]).upper()])
    with unzip(archive) as unpacked:
        assert unpacked.namelist() == ["clip.mp3", "clip (2).mp3", "CLIP (3).mp3", "clip (2) (2).mp3"]
        assert [unpacked.read(name) for name in unpacked.namelist()] == [two_mp3s[i % 2] for i in range(4)]


def test_a_split_jobs_tracks_go_in_a_folder_of_its_name_and_its_own_zip_has_a_playlist(user, stored, two_mp3s):
    single = stored(user, mp3=two_mp3s[0], name="lecture.mkv")
    split = stored(user, name="lecture.mp4")
    Conversion.objects.filter(pk=split.pk).update(options={"split": "chapters"})
    names = []
    for number, (title, mp3) in enumerate([("Intro", two_mp3s[0]), ("Q/A?", two_mp3s[1])], start=1):
        name = default_storage.save(f"tracks/{split.id}-1-{number:03d}.mp3", ContentFile(mp3))
        names.append(name)
        split.tracks.create(number=number, title=title, start_seconds=0, duration_seconds=2.2, mp3=name,
                            size=len(mp3))
    try:
        _, archive = conversions_zip(user=user, conversion_ids=[single.id, split.id])
        with unzip(archive) as unpacked:
            assert unpacked.namelist() == ["lecture.mp3", "lecture/01 - Intro.mp3", "lecture/02 - Q A.mp3"]
            assert unpacked.read("lecture/02 - Q A.mp3") == two_mp3s[1]

        filename, archive = tracks_zip(conversion=Conversion.objects.get(pk=split.pk))
        assert filename == "lecture.zip" and archive.sized
        body = b"".join(archive)
        assert len(body) == len(archive)
        with zipfile.ZipFile(io.BytesIO(body)) as unpacked:
            assert unpacked.namelist() == ["01 - Intro.mp3", "02 - Q A.mp3", "lecture.m3u"]
            assert unpacked.read("lecture.m3u").decode() == (
                "#EXTM3U\r\n#EXTINF:2,Intro\r\n01 - Intro.mp3\r\n#EXTINF:2,Q/A?\r\n02 - Q A.mp3\r\n"
            )
    finally:
        for name in names:
            default_storage.delete(name)


def test_entry_names():
    assert zip_entry_names(["a.mp3", "b.mp3"]) == ["a.mp3", "b.mp3"]
    assert zip_entry_names(["a.mp3", "a.mp3", "A.MP3"]) == ["a.mp3", "a (2).mp3", "A (3).MP3"]
    assert zip_entry_names(["a (2).mp3", "a.mp3", "a.mp3"]) == ["a (2).mp3", "a.mp3", "a (3).mp3"]


def test_another_users_job_and_an_unknown_id_are_not_found_alike(user, stored, two_mp3s):
    mine = stored(user, mp3=two_mp3s[0])
    theirs = stored(UserFactory(), mp3=two_mp3s[1], name="secret-plans.mp4")
    unknown = uuid.uuid4()
    for ids, named in (([mine.id, theirs.id], theirs.id), ([unknown], unknown), ([mine.id, "not-an-id"], "not-an-id")):
        with pytest.raises(NotFound) as refused:
            conversions_zip(user=user, conversion_ids=ids)
        assert refused.value.code == ErrorCode.NOT_FOUND and refused.value.status == 404
        assert str(named) in refused.value.message
        assert "secret-plans" not in refused.value.message and str(mine.id) not in refused.value.message
    # The same sentence for both: nothing tells another user's job from one that does not exist.
    messages = set()
    for conversion_id in (theirs.id, unknown):
        with pytest.raises(NotFound) as refused:
            conversions_zip(user=user, conversion_ids=[conversion_id])
        messages.add(refused.value.message.replace(str(conversion_id), "<id>"))
    assert len(messages) == 1


def test_a_job_that_is_not_done_is_refused_by_name(user, stored, two_mp3s):
    done = stored(user, mp3=two_mp3s[0])
    queued = stored(user, status="queued", name="still-waiting.mp4")
    failed = stored(user, status="failed", name="broken.mp4")
    with pytest.raises(InvalidState) as refused:
        conversions_zip(user=user, conversion_ids=[done.id, queued.id, failed.id])
    assert refused.value.code == ErrorCode.INVALID_STATE and refused.value.status == 409
    message = refused.value.message
    assert f"{queued.id} (still-waiting.mp4) is queued" in message
    assert f"{failed.id} (broken.mp4) is failed" in message
    assert str(done.id) not in message


def test_no_ids_or_too_many_are_a_bad_request(user, stored, two_mp3s):
    with pytest.raises(InvalidRequest) as refused:
        conversions_zip(user=user, conversion_ids=[])
    assert refused.value.field == "ids" and refused.value.status == 400
    too_many = [uuid.uuid4() for _ in range(ZIP_MAX_CONVERSIONS + 1)]
    with pytest.raises(InvalidRequest) as refused:
        conversions_zip(user=user, conversion_ids=too_many)
    assert refused.value.field == "ids" and f"{ZIP_MAX_CONVERSIONS + 1}" in refused.value.message
    # Exactly the limit is fine (the same job a hundred times is one entry; the limit counts what was asked).
    job = stored(user, mp3=two_mp3s[0])
    _, archive = conversions_zip(user=user, conversion_ids=[job.id] * ZIP_MAX_CONVERSIONS)
    assert unzip(archive).namelist() == ["clip.mp3"]


# --- streaming: lazily, chunk by chunk, through the Storage API -------------------------------------------------
class RecordingFile:
    """A stored file that records its reads (each must ask for a bounded chunk) and its closing."""

    def __init__(self, file, name: str) -> None:
        self.file, self.name = file, name

    def read(self, size=-1) -> bytes:
        assert size is not None and 0 < size <= ZIP_CHUNK_SIZE, f"read({size}): not a bounded chunk"
        RecordingStorage.reads.append(size)
        return self.file.read(size)

    def close(self) -> None:
        RecordingStorage.closed.append(self.name)
        self.file.close()


class RecordingStorage(FileSystemStorage):
    """A folder storage that records every file it opens, every read made on it and every close."""

    opened: list[str] = []
    reads: list[int] = []
    closed: list[str] = []

    def open(self, name, mode="rb"):
        RecordingStorage.opened.append(name)
        return RecordingFile(super().open(name, mode), name)


@pytest.fixture
def recording_storage(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}.RecordingStorage", "OPTIONS": {"location": str(tmp_path / "files")}},
    }
    RecordingStorage.opened, RecordingStorage.reads, RecordingStorage.closed = [], [], []
    yield RecordingStorage


def test_each_mp3_is_read_in_chunks_only_when_the_zip_reaches_it(user, stored, recording_storage):
    big = bytes(range(256)) * 1024  # 256 KiB: several chunks
    small = b"ID3" + bytes(1000)
    first, second = stored(user, mp3=big, name="big.mp4"), stored(user, mp3=small, name="small.mp4")
    _, archive = conversions_zip(user=user, conversion_ids=[first.id, second.id])
    assert recording_storage.opened == []  # nothing is read before the body is sent

    chunks = iter(archive)
    received = bytearray()
    while not recording_storage.opened:
        received += next(chunks)
    assert recording_storage.opened == [first.mp3.name]
    while len(recording_storage.opened) < 2:
        received += next(chunks)
    assert recording_storage.closed == [first.mp3.name]  # done with the first before the second is opened
    received += b"".join(chunks)
    assert recording_storage.closed == [first.mp3.name, second.mp3.name]
    assert len(recording_storage.reads) >= len(big) // ZIP_CHUNK_SIZE
    with zipfile.ZipFile(io.BytesIO(bytes(received))) as unpacked:
        assert unpacked.read("big.mp3") == big and unpacked.read("small.mp3") == small


def test_closing_an_archive_half_way_closes_the_file_it_was_reading(user, stored, recording_storage):
    job = stored(user, mp3=bytes(300_000))
    _, archive = conversions_zip(user=user, conversion_ids=[job.id])
    chunks = iter(archive)
    while not recording_storage.opened:
        next(chunks)
    assert recording_storage.closed == []
    archive.close()  # what the response does when the client goes away
    assert recording_storage.closed == [job.mp3.name]


def test_a_zip_streams_from_s3(user, stored, two_mp3s, files_in_s3):
    assert default_storage.__class__.__name__ == "S3Storage"
    first, second = stored(user, mp3=two_mp3s[0], name="a.mp4"), stored(user, mp3=two_mp3s[1], name="b.mp4")
    assert Path(first.mp3.name).parts[0] == "mp3"
    _, archive = conversions_zip(user=user, conversion_ids=[first.id, second.id])
    body = b"".join(archive)
    assert len(body) == len(archive)
    with zipfile.ZipFile(io.BytesIO(body)) as unpacked:
        assert unpacked.read("a.mp3") == two_mp3s[0] and unpacked.read("b.mp3") == two_mp3s[1]
