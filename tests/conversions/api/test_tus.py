"""Resumable uploads (conversions/api/tus.py) end to end: the official Python tus client (tuspy) against the live
server, real MariaDB, RabbitMQ, worker processes and ffmpeg. The protocol's refusals that need no worker are in
test_tus_protocol.py."""

import hashlib
import json
import re

import pytest
import requests
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError
from tusclient.uploader import Uploader

from conversions.models import Conversion, ResumableUpload
from conversions.services import resumable_upload_delete, resumable_uploads_sweep
from tests.conversions.api.helpers import mp3_bytes, upload, wait_finished
from tests.media.crafted import silent_flac
from tests.utils import partial_uploads, stored_files

pytestmark = [pytest.mark.e2e]

CHUNK = 16 * 1024


class Sha256Uploader(Uploader):
    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


class LyingUploader(Uploader):
    """Sends a sha256 of other bytes than the chunk's: the server must refuse the chunk."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", lambda data: hashlib.sha256(data + b"!"))


@pytest.fixture(autouse=True)
def _no_upload_left(transactional_db):
    """What a test leaves unfinished (one that failed half-way) is terminated as a DELETE would: no partial file of it
    stays in the session's media folder."""
    yield
    for left in ResumableUpload.objects.all():
        resumable_upload_delete(upload=left)


def tus_client(live_server, user) -> TusClient:
    token = AccessToken.for_user(user)
    return TusClient(f"{live_server.url}/api/uploads/", headers={"Authorization": f"Bearer {token}"})


def session_tus_client(live_server, user) -> TusClient:
    """A tus client signed in as a browser is: the session cookie, and the CSRF token the convert page carries."""
    browser = Client()
    browser.force_login(user)
    session = browser.cookies[settings.SESSION_COOKIE_NAME].value
    page = requests.get(f"{live_server.url}/", cookies={settings.SESSION_COOKIE_NAME: session}, timeout=10)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    csrf_cookie = page.cookies[settings.CSRF_COOKIE_NAME]
    cookies = f"{settings.SESSION_COOKIE_NAME}={session}; {settings.CSRF_COOKIE_NAME}={csrf_cookie}"
    return TusClient(f"{live_server.url}/api/uploads/", headers={"Cookie": cookies, "X-CSRFToken": token})


def test_interrupted_upload_resumes_from_a_new_client_and_converts(live_server, live_workers, user, api_client, media):
    source = media("mp4_aac", duration=3.0)
    size = source.stat().st_size
    assert size > 4 * CHUNK
    partials_before = partial_uploads()
    first = tus_client(live_server, user).uploader(
        str(source), chunk_size=CHUNK, metadata={"filename": "lecture.mp4", "bitrate_kbps": "128"},
        upload_checksum=True,
    )
    first.upload(stop_at=3 * CHUNK)  # the connection "drops" after three chunks
    assert first.offset == 3 * CHUNK
    upload_row = ResumableUpload.objects.get()
    assert upload_row.offset == 3 * CHUNK and upload_row.completed_at is None

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
    assert partial_uploads() == partials_before

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
        headers={**resumed.get_headers(), "Upload-Offset": str(size),
                 "Content-Type": "application/offset+octet-stream"},
    )
    assert late.status_code == 410 and late.json()["code"] == "upload_gone"


def test_checksum_mismatch_wrong_offset_expiry_and_another_users_upload(live_server, user, other_user, media):
    source = media("mp4_aac")
    partials_before = partial_uploads()
    uploader = tus_client(live_server, user).uploader(str(source), chunk_size=CHUNK, upload_checksum=True)
    uploader.upload(stop_at=CHUNK)
    headers = uploader.get_headers()
    partial = default_storage.path(ResumableUpload.objects.get().store_state["partial"])

    lying = LyingUploader(str(source), url=uploader.url, client=tus_client(live_server, user), chunk_size=CHUNK,
                          upload_checksum=True, retries=0)
    with pytest.raises(TusCommunicationError) as refused:
        lying.upload_chunk()
    assert refused.value.status_code == 460
    assert b'"code":"checksum_mismatch"' in refused.value.response_content
    assert uploader.get_offset() == CHUNK  # the chunk was discarded
    with open(partial, "rb") as kept:
        assert kept.read() == source.read_bytes()[:CHUNK]

    uploader.offset = CHUNK // 2  # a client that lost count
    with pytest.raises(TusCommunicationError) as conflict:
        uploader.upload_chunk()
    assert conflict.value.status_code == 409
    assert b'"code":"offset_mismatch"' in conflict.value.response_content
    uploader.offset = CHUNK

    other = tus_client(live_server, other_user)
    for method in ("head", "patch", "delete"):
        answer = requests.request(method, uploader.url, headers={**headers, **other.headers}, timeout=10)
        assert answer.status_code == 404, method
    assert uploader.get_offset() == CHUNK  # still there, untouched

    ResumableUpload.objects.update(expires_at=timezone.now() - timezone.timedelta(seconds=1))
    with pytest.raises(TusCommunicationError) as gone:
        uploader.upload_chunk()
    assert gone.value.status_code == 410
    assert b'"code":"upload_gone"' in gone.value.response_content
    assert resumable_uploads_sweep() == 1
    assert partial_uploads() == partials_before and not ResumableUpload.objects.exists()
    assert requests.head(uploader.url, headers=headers, timeout=10).status_code == 404


@pytest.mark.parametrize("sign_in", ["jwt", "session"])
def test_termination_removes_the_bytes(live_server, user, media, sign_in):
    client = tus_client(live_server, user) if sign_in == "jwt" else session_tus_client(live_server, user)
    partials_before = partial_uploads()
    uploader = client.uploader(str(media("mp4_aac")), chunk_size=CHUNK)
    uploader.upload(stop_at=2 * CHUNK)
    assert uploader.get_offset() == 2 * CHUNK
    assert len(partial_uploads() - partials_before) == 1
    answer = requests.delete(uploader.url, headers=uploader.get_headers(), timeout=10)
    assert answer.status_code == 204 and answer.headers["Tus-Resumable"] == "1.0.0"
    assert partial_uploads() == partials_before and not ResumableUpload.objects.exists()
    assert requests.head(uploader.url, headers=uploader.get_headers(), timeout=10).status_code == 404


def test_the_web_session_uploads_to_the_end(live_server, live_workers, user, api_client, media):
    source = media("mp4_aac")
    uploader = session_tus_client(live_server, user).uploader(
        str(source), chunk_size=CHUNK, metadata={"filename": "clip.mp4"}
    )
    uploader.upload()
    conversion = Conversion.objects.get(owner=user)
    assert conversion.original_filename == "clip.mp4"
    assert wait_finished(api_client, str(conversion.pk))["status"] == "done"
    # Without the CSRF token the session is not enough.
    cookie_only = requests.post(
        f"{live_server.url}/api/uploads/", timeout=10,
        headers={"Cookie": uploader.client.headers["Cookie"], "Tus-Resumable": "1.0.0", "Upload-Length": "10"},
    )
    assert cookie_only.status_code == 403


def long_flac(tmp_path, settings):
    settings.MAX_DURATION_MINUTES = 1
    return silent_flac(tmp_path / "long.flac", 180)


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda media, tmp_path, settings: media("random_bytes_mp4"), 415, "unsupported_media"),
        (lambda media, tmp_path, settings: media("mp4_noaudio"), 422, "no_audio_stream"),
        (lambda media, tmp_path, settings: long_flac(tmp_path, settings), 422, "too_long"),
    ],
    ids=["not-media", "no-audio", "too-long"],
)
def test_a_finished_upload_that_a_post_would_refuse_gets_the_posts_answer_and_nothing_is_kept(
    live_server, user, api_client, media, tmp_path, settings, make, status, code
):
    path = make(media, tmp_path, settings)
    chunk = 2048
    assert path.stat().st_size > 2 * chunk  # the last byte comes in a later request than the first
    stored_before, partials_before = stored_files(), partial_uploads()
    posted = upload(api_client, path)
    assert posted.status_code == status and posted.json()["code"] == code, posted.content

    uploader = tus_client(live_server, user).uploader(
        str(path), chunk_size=chunk, metadata={"filename": path.name}, retries=0
    )
    with pytest.raises(TusCommunicationError) as refused:
        uploader.upload()
    assert refused.value.status_code == status
    assert json.loads(refused.value.response_content) == posted.json()
    assert stored_files() == stored_before and partial_uploads() == partials_before
    assert not ResumableUpload.objects.exists() and not Conversion.objects.exists()
