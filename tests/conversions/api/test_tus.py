"""Resumable uploads (conversions/api/tus.py) end to end: the official Python tus client (tuspy) against the live
server, real MariaDB, RabbitMQ, worker processes and ffmpeg. The protocol's refusals that need no worker are in
test_tus_protocol.py."""

import hashlib
import os

import pytest
import requests
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError
from tusclient.uploader import Uploader

from conversions.models import Conversion, ResumableUpload
from conversions.services import resumable_uploads_sweep
from tests.conversions.api.helpers import mp3_bytes, wait_finished
from tests.utils import stored_files

pytestmark = [pytest.mark.e2e]

CHUNK = 16 * 1024


class Sha256Uploader(Uploader):
    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


class LyingUploader(Uploader):
    """Sends a sha256 of other bytes than the chunk's: the server must refuse the chunk."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", lambda data: hashlib.sha256(data + b"!"))


def tus_client(live_server, user) -> TusClient:
    return TusClient(f"{live_server.url}/api/uploads/", headers={"Authorization": f"Bearer {AccessToken.for_user(user)}"})


def partial_files() -> list[str]:
    folder = os.path.join(settings.MEDIA_ROOT, "uploads")
    return os.listdir(folder) if os.path.isdir(folder) else []


def test_interrupted_upload_resumes_from_a_new_client_and_converts(live_server, live_workers, user, api_client, media):
    source = media("mp4_aac", duration=3.0)
    size = source.stat().st_size
    assert size > 4 * CHUNK
    first = tus_client(live_server, user).uploader(
        str(source), chunk_size=CHUNK, metadata={"filename": "lecture.mp4", "bitrate_kbps": "128"},
        upload_checksum=True,
    )
    first.upload(stop_at=3 * CHUNK)  # the connection "drops" after three chunks
    assert first.offset == 3 * CHUNK
    upload = ResumableUpload.objects.get()
    assert upload.offset == 3 * CHUNK and upload.completed_at is None

    # A new client, knowing only the URL, asks the server where to go on (HEAD) and finishes with sha256 checksums.
    resumed = Sha256Uploader(
        str(source), url=first.url, client=tus_client(live_server, user), chunk_size=CHUNK, upload_checksum=True
    )
    assert resumed.offset == 3 * CHUNK
    resumed.upload()
    assert resumed.offset == size

    head = requests.head(first.url, headers={**resumed.get_headers()}, timeout=10)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(size)
    assert head.headers["Cache-Control"] == "no-store"
    conversion_id = head.headers["Conversion-Id"]
    assert head.headers["Conversion-Location"] == f"/api/conversions/{conversion_id}/"
    assert partial_files() == []

    # The conversion is in the job list and converts as a POSTed one does.
    listed = api_client.get("/api/conversions/").json()["results"]
    assert [job["id"] for job in listed] == [conversion_id]
    assert listed[0]["original_filename"] == "lecture.mp4"
    assert listed[0]["options"] == {"bitrate_kbps": 128, "title": "lecture"}
    finished = wait_finished(api_client, conversion_id)
    assert finished["status"] == "done", finished
    assert finished["source_size"] == size
    assert len(mp3_bytes(api_client.get(f"/api/conversions/{conversion_id}/download/"))) == finished["mp3_size"]

    # A finished upload takes no more bytes.
    late = requests.patch(
        first.url, data=b"x", timeout=10,
        headers={**resumed.get_headers(), "Upload-Offset": str(size), "Content-Type": "application/offset+octet-stream"},
    )
    assert late.status_code == 410 and late.json()["code"] == "upload_gone"


def test_checksum_mismatch_wrong_offset_expiry_and_another_users_upload(live_server, live_workers, user, other_user,
                                                                        media):
    source = media("mp4_aac")
    uploader = tus_client(live_server, user).uploader(str(source), chunk_size=CHUNK, upload_checksum=True)
    uploader.upload(stop_at=CHUNK)
    headers = uploader.get_headers()

    lying = LyingUploader(str(source), url=uploader.url, client=tus_client(live_server, user), chunk_size=CHUNK,
                          upload_checksum=True, retries=0)
    with pytest.raises(TusCommunicationError) as refused:
        lying.upload_chunk()
    assert refused.value.status_code == 460
    assert uploader.get_offset() == CHUNK  # the chunk was discarded
    with open(os.path.join(settings.MEDIA_ROOT, "uploads", partial_files()[0]), "rb") as partial:
        assert partial.read() == source.read_bytes()[:CHUNK]

    uploader.offset = CHUNK // 2  # a client that lost count
    with pytest.raises(TusCommunicationError) as conflict:
        uploader.upload_chunk()
    assert conflict.value.status_code == 409
    uploader.offset = CHUNK

    other = tus_client(live_server, other_user)
    for method in ("head", "patch", "delete"):
        answer = requests.request(method, uploader.url, headers={**headers, **other.headers}, timeout=10)
        assert answer.status_code == 404, method

    ResumableUpload.objects.update(expires_at=timezone.now() - timezone.timedelta(seconds=1))
    with pytest.raises(TusCommunicationError) as gone:
        uploader.upload_chunk()
    assert gone.value.status_code == 410
    assert resumable_uploads_sweep() == 1
    assert partial_files() == [] and not ResumableUpload.objects.exists()
    assert requests.head(uploader.url, headers=headers, timeout=10).status_code == 404


def test_termination_removes_the_bytes(live_server, live_workers, user, media):
    uploader = tus_client(live_server, user).uploader(str(media("mp4_aac")), chunk_size=CHUNK)
    uploader.upload(stop_at=CHUNK)
    assert len(partial_files()) == 1
    answer = requests.delete(uploader.url, headers=uploader.get_headers(), timeout=10)
    assert answer.status_code == 204 and answer.headers["Tus-Resumable"] == "1.0.0"
    assert partial_files() == [] and not ResumableUpload.objects.exists()
    assert requests.head(uploader.url, headers=uploader.get_headers(), timeout=10).status_code == 404


def test_a_finished_upload_that_is_not_media_gets_the_posts_answer_and_is_removed(live_server, live_workers, user,
                                                                                  tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_bytes(b"not a video at all\n" * 10000)
    stored_before = stored_files()
    uploader = tus_client(live_server, user).uploader(str(text), chunk_size=CHUNK, retries=0)
    with pytest.raises(TusCommunicationError) as refused:
        uploader.upload()
    assert refused.value.status_code == 415
    assert b'"code":"unsupported_media"' in refused.value.response_content
    assert partial_files() == [] and stored_files() == stored_before
    assert not ResumableUpload.objects.exists() and not Conversion.objects.exists()
