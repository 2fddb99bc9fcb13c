"""The tus protocol's answers that need no worker (conversions/api/tus.py): discovery, creation and its refusals,
headers, the per-request cap, the web session with its CSRF header. The end-to-end runs with tuspy are in
test_tus.py."""

import base64
import hashlib

import pytest
from django.test import Client
from django.utils import timezone

from conversions.models import Conversion, ResumableUpload
from conversions.services import resumable_upload_delete, resumable_uploads_sweep
from tests.factories import PASSWORD
from tests.utils import partial_uploads

pytestmark = [pytest.mark.django_db]

TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}
OFFSET_STREAM = "application/offset+octet-stream"


@pytest.fixture(autouse=True)
def _no_upload_left(db):
    """The uploads a test leaves unfinished are terminated as a DELETE would: rolling the database back would leave
    their partial files in the session's media folder."""
    before = partial_uploads()
    yield
    for left in ResumableUpload.objects.all():
        resumable_upload_delete(upload=left)
    assert partial_uploads() == before


def metadata(**values: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


def create(client, length=1000, body=b"", **headers):
    extra = {**TUS, "HTTP_UPLOAD_LENGTH": str(length), **headers}
    if body:
        return client.generic("POST", "/api/uploads/", body, content_type=OFFSET_STREAM, **extra)
    return client.generic("POST", "/api/uploads/", **extra)


def patch(client, url, body: bytes, offset: int, content_type=OFFSET_STREAM, **headers):
    return client.generic(
        "PATCH", url, body, content_type=content_type, HTTP_UPLOAD_OFFSET=str(offset), **TUS, **headers
    )


def test_options_tells_what_the_server_supports_without_sign_in(settings):
    answer = Client().options("/api/uploads/")
    assert answer.status_code == 204
    assert answer["Tus-Resumable"] == answer["Tus-Version"] == "1.0.0"
    assert answer["Tus-Extension"] == "creation,creation-with-upload,termination,expiration,checksum"
    assert answer["Tus-Max-Size"] == str(settings.MAX_UPLOAD_MB * 1024 * 1024)
    assert answer["Tus-Checksum-Algorithm"] == "sha1,sha256"


def test_creation_then_head_and_a_chunk(api_client, settings):
    created = create(api_client, length=10, HTTP_UPLOAD_METADATA=metadata(
        filename="talk.mkv", filetype="video/x-matroska", relativePath="x/talk.mkv", channels="1"
    ))
    assert created.status_code == 201, created.content
    assert created["Tus-Resumable"] == "1.0.0"
    assert created["Location"].startswith("http://testserver/api/uploads/")
    upload = ResumableUpload.objects.get()
    assert (upload.original_filename, upload.options, upload.length) == ("talk.mkv", {"channels": 1}, 10)
    expected_expiry = timezone.now() + timezone.timedelta(hours=settings.UPLOAD_EXPIRY_HOURS)
    assert abs((upload.expires_at - expected_expiry).total_seconds()) < 60
    assert created["Upload-Expires"].endswith(" GMT")

    head = api_client.head(created["Location"], **TUS)
    assert head.status_code == 200
    assert (head["Upload-Offset"], head["Upload-Length"], head["Cache-Control"]) == ("0", "10", "no-store")
    chunk = patch(api_client, created["Location"], b"12345", 0,
                  HTTP_UPLOAD_CHECKSUM="sha256 " + base64.b64encode(hashlib.sha256(b"12345").digest()).decode())
    assert chunk.status_code == 204, chunk.content
    assert chunk["Upload-Offset"] == "5"
    assert api_client.head(created["Location"], **TUS)["Upload-Offset"] == "5"


def test_webhook_url_in_the_metadata_becomes_the_jobs_own_webhook(api_client, media, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    data = media("mp4_aac").read_bytes()
    created = create(api_client, length=len(data), HTTP_UPLOAD_METADATA=metadata(
        filename="clip.mp4", webhook_url="http://127.0.0.1:9/tus"
    ))
    assert created.status_code == 201, created.content
    assert ResumableUpload.objects.get().webhook_url == "http://127.0.0.1:9/tus"
    done = patch(api_client, created["Location"], data, 0)
    assert done.status_code == 204, done.content
    assert Conversion.objects.get(pk=done["Conversion-Id"]).webhook_url == "http://127.0.0.1:9/tus"


def test_creation_with_upload_takes_the_first_bytes(api_client):
    created = create(api_client, length=10, body=b"abc")
    assert created.status_code == 201, created.content
    assert created["Upload-Offset"] == "3"


@pytest.mark.parametrize(
    ("headers", "status", "expected"),
    [
        # Unknown metadata keys and bad options are named as field errors; the rest carry a code.
        ({"HTTP_UPLOAD_METADATA": metadata(colour="blue")}, 400,
         {"colour": ["Upload-Metadata has an unknown key 'colour'."]}),
        ({"HTTP_UPLOAD_METADATA": metadata(bitrate_kbps="7")}, 400, "field:bitrate_kbps"),
        ({"HTTP_UPLOAD_METADATA": "filename %%%"}, 400, "invalid_request"),
        ({"HTTP_UPLOAD_LENGTH": "many"}, 400, "invalid_request"),
        ({"HTTP_UPLOAD_LENGTH": "0"}, 400, "invalid_request"),
        ({"HTTP_TUS_RESUMABLE": "0.2.2"}, 412, "unsupported_version"),
    ],
)
def test_creation_refusals(api_client, headers, status, expected):
    answer = create(api_client, **headers)
    assert answer.status_code == status, answer.content
    assert answer["Tus-Resumable"] == "1.0.0"
    body = answer.json()
    if isinstance(expected, dict):
        assert body == expected
    elif expected.startswith("field:"):
        assert list(body) == [expected.removeprefix("field:")]
    else:
        assert body["code"] == expected
    assert not ResumableUpload.objects.exists()


def test_past_the_size_cap_is_413_at_creation(api_client, settings):
    settings.MAX_UPLOAD_MB = 1
    answer = create(api_client, length=1024 * 1024 + 1)
    assert answer.status_code == 413 and answer.json()["code"] == "file_too_large"


def test_past_the_storage_quota_is_413_at_creation(api_client, user, settings):
    user.quota_storage_mb = 1
    user.save()
    answer = create(api_client, length=2 * 1024 * 1024)
    assert answer.status_code == 413 and answer.json()["code"] == "quota_exceeded"


def test_patch_refusals(api_client, settings):
    url = create(api_client, length=3 * 1024 * 1024)["Location"]
    wrong_type = patch(api_client, url, b"abc", 0, content_type="application/octet-stream")
    assert wrong_type.status_code == 415 and wrong_type.json()["code"] == "unsupported_content_type"
    assert patch(api_client, url, b"abc", 1).json()["code"] == "offset_mismatch"
    settings.TUS_MAX_CHUNK_MB = 1
    too_big = patch(api_client, url, b"x" * (1024 * 1024 + 1), 0)
    assert too_big.status_code == 413 and too_big.json()["code"] == "chunk_too_large"
    settings.TUS_MAX_CHUNK_MB = 64
    past_length = patch(api_client, url, b"x" * (3 * 1024 * 1024 + 1), 0)
    assert past_length.status_code == 413 and past_length.json()["code"] == "chunk_too_large"
    bad_checksum = patch(api_client, url, b"abc", 0, HTTP_UPLOAD_CHECKSUM="md5 AAAA")
    assert bad_checksum.status_code == 400
    mismatch = patch(api_client, url, b"abc", 0,
                     HTTP_UPLOAD_CHECKSUM="sha1 " + base64.b64encode(hashlib.sha1(b"abd").digest()).decode())
    assert mismatch.status_code == 460 and mismatch.json()["code"] == "checksum_mismatch"
    assert api_client.head(url, **TUS)["Upload-Offset"] == "0"
    assert api_client.head(url)["Tus-Resumable"] == "1.0.0" and api_client.head(url).status_code == 412


def test_a_busy_upload_answers_423(api_client):
    url = create(api_client, length=10)["Location"]
    ResumableUpload.objects.update(locked_until=timezone.now() + timezone.timedelta(seconds=30))
    busy = patch(api_client, url, b"abc", 0)
    assert busy.status_code == 423 and busy.json()["code"] == "upload_busy"


def test_the_web_session_needs_the_csrf_header(user):
    browser = Client(enforce_csrf_checks=True)
    assert browser.login(username=user.email, password=PASSWORD)
    browser.get("/")  # sets the CSRF cookie, as the convert page does
    refused = create(browser)
    assert refused.status_code == 403
    token = browser.cookies["csrftoken"].value
    created = create(browser, HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201, created.content
    assert patch(browser, created["Location"], b"abc", 0, HTTP_X_CSRFTOKEN=token).status_code == 204
    with_upload = create(browser, body=b"abc", HTTP_X_CSRFTOKEN=token)
    assert with_upload.status_code == 201 and with_upload["Upload-Offset"] == "3"


def test_the_sweep_removes_expired_uploads_only(api_client):
    kept = create(api_client, length=10)["Location"]
    expired = create(api_client, length=10)["Location"]
    ResumableUpload.objects.filter(pk=expired.rstrip("/").rsplit("/", 1)[1]).update(
        expires_at=timezone.now() - timezone.timedelta(minutes=1)
    )
    assert resumable_uploads_sweep() == 1
    assert api_client.head(expired, **TUS).status_code == 404
    assert api_client.head(kept, **TUS).status_code == 200
