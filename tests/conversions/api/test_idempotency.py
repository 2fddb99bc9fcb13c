"""The Idempotency-Key header (conversions/api/idempotency.py) on the three ways an upload starts: the native
POST /api/conversions/, the classic POST /upload and a tus creation. Real uploads of generated media, the real database
and file store; no worker runs in the first tests (on_commit does not fire under `db`), so jobs stay queued. The last
two run end to end: tuspy and concurrent clients against the live server, with the workers."""

import base64
import threading
from datetime import timedelta

import pytest
import requests
from django.core.files.storage import default_storage
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken
from tusclient.client import TusClient

from conversions.models import Conversion, IdempotencyKey, ResumableUpload, UploadRecord
from conversions.services import resumable_upload_delete
from tests.conversions.api.helpers import classic_token, wait_finished
from tests.utils import partial_uploads, stored_files

KEY = "5d0c4b4e-2f7a-4c59-8d8e-0b1e2a3c4d5f"
TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}


@pytest.fixture(autouse=True)
def _clean_storage(settings):
    """No stored file or partial upload left behind (rolling the database back keeps them)."""
    before = stored_files()
    yield
    for left in ResumableUpload.objects.all():
        resumable_upload_delete(upload=left)
    for name in stored_files() - before:
        default_storage.delete(name)


def post(client, path, *, key=KEY, **fields):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    with open(path, "rb") as source:
        return client.post("/api/conversions/", {"file": source, **fields}, format="multipart", **headers)


def classic_post(client, token, path, *, key=KEY, **fields):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    with open(path, "rb") as source:
        return client.post("/upload", {"file": source, **fields}, format="multipart", **headers)


def tus_create(client, length=1000, *, key=KEY, filename="lecture.mp4", **headers):
    metadata = f"filename {base64.b64encode(filename.encode()).decode()}"
    extra = {**TUS, "HTTP_UPLOAD_LENGTH": str(length), "HTTP_UPLOAD_METADATA": metadata, **headers}
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return client.generic("POST", "/api/uploads/", **extra)


def kept(user) -> tuple[int, int, set[str]]:
    """What uploads keep: job rows, uploads counted for the hourly limit, stored files."""
    return Conversion.objects.filter(owner=user).count(), UploadRecord.objects.filter(owner=user).count(), stored_files()


# --- the native API ----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_same_request_with_the_same_key_gets_the_first_answer_and_stores_nothing(api_client, user, media):
    source = media("mp4_aac")
    jobs, counted, files = kept(user)
    first = post(api_client, source, bitrate_kbps=128)
    assert first.status_code == 202, first.content
    assert "Idempotent-Replayed" not in first
    assert kept(user) == (jobs + 1, counted + 1, files | {f"sources/{first.json()['id']}"})

    again = post(api_client, source, bitrate_kbps=128)
    assert again.status_code == 202
    assert again.content == first.content and again.json()["status"] == "queued"
    assert again["Location"] == first["Location"] == f"/api/conversions/{first.json()['id']}/"
    assert again["Content-Type"] == "application/json"
    assert again["Idempotent-Replayed"] == "true"
    assert kept(user) == (jobs + 1, counted + 1, files | {f"sources/{first.json()['id']}"})


@pytest.mark.django_db
def test_the_key_with_another_request_is_422_and_stores_nothing(api_client, user, media):
    source = media("mp4_aac")
    first = post(api_client, source)
    assert first.status_code == 202, first.content
    before = kept(user)
    for other in (
        lambda: post(api_client, media("mkv_opus")),  # another file
        lambda: post(api_client, media("mp4_aac", duration=3.0)),  # another file of the same name
        lambda: post(api_client, source, bitrate_kbps=128),  # another option
        lambda: tus_create(api_client),  # another endpoint
    ):
        refused = other()
        assert refused.status_code == 422, refused.content
        assert refused.json()["code"] == "idempotency_key_reused"
        assert "different request" in refused.json()["detail"]
    assert kept(user) == before
    assert not ResumableUpload.objects.exists()


@pytest.mark.django_db
def test_keys_are_each_users_own(api_client, other_client, media):
    source = media("mp4_aac")
    mine, theirs = post(api_client, source), post(other_client, source)
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]
    assert "Idempotent-Replayed" not in theirs
    assert post(other_client, source).json()["id"] == theirs.json()["id"]


@pytest.mark.django_db
def test_without_the_header_every_post_is_a_new_job(api_client, user, media):
    source = media("mp4_aac")
    answers = [post(api_client, source, key=None) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [202, 202]
    assert answers[0].json()["id"] != answers[1].json()["id"]
    assert not any(answer.has_header("Idempotent-Replayed") for answer in answers)
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_a_repeat_is_answered_although_the_account_is_at_its_limit_now(api_client, user, media, settings):
    settings.QUOTA_ACTIVE_JOBS = 1
    first = post(api_client, media("mp4_aac"))
    assert first.status_code == 202, first.content
    limited = post(api_client, media("mp4_aac"), key="another key")
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
    again = post(api_client, media("mp4_aac"))
    assert (again.status_code, again.content) == (202, first.content)


@pytest.mark.django_db
def test_a_refused_request_keeps_no_key_so_a_corrected_one_may_use_it(api_client, user, media):
    before = kept(user)
    refused = post(api_client, media("text"))
    assert (refused.status_code, refused.json()["code"]) == (415, "unsupported_media")
    assert not IdempotencyKey.objects.exists()
    assert kept(user) == before
    accepted = post(api_client, media("mp4_aac"))
    assert accepted.status_code == 202, accepted.content


@pytest.mark.django_db
def test_a_key_expires_after_a_day(api_client, user, media):
    source = media("mp4_aac")
    first = post(api_client, source)
    day_ago = timezone.now() - timedelta(hours=24, seconds=1)
    IdempotencyKey.objects.update(created_at=day_ago, claimed_at=day_ago)
    again = post(api_client, source)
    assert again.status_code == 202, again.content
    assert again.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in again
    assert Conversion.objects.filter(owner=user).count() == 2


@pytest.mark.django_db
def test_a_repeat_while_the_first_is_at_work_is_409_and_a_dead_ones_key_is_taken_over(api_client, user, media):
    source = media("mp4_aac")
    first = post(api_client, source)
    # As if the first request were still at work: claimed, not answered.
    IdempotencyKey.objects.update(status_code=None, claimed_at=timezone.now())
    busy = post(api_client, source)
    assert (busy.status_code, busy.json()["code"], busy["Retry-After"]) == (409, "idempotency_key_in_use", "5")
    # Its process died without an answer: after ten minutes the claim is the next request's.
    IdempotencyKey.objects.update(claimed_at=timezone.now() - timedelta(minutes=10, seconds=1))
    taken = post(api_client, source)
    assert taken.status_code == 202, taken.content
    assert taken.json()["id"] != first.json()["id"]
    assert post(api_client, source).content == taken.content


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", " ", "x" * 256, "tab\there", "caf\u00e9"])
def test_a_bad_key_is_400_and_nothing_is_kept(api_client, user, media, key):
    before = kept(user)
    refused = post(api_client, media("mp4_aac"), key=key)
    assert refused.status_code == 400, refused.content
    assert refused.json()["code"] == "invalid_request"
    assert "Idempotency-Key" in refused.json()["detail"]
    assert kept(user) == before and not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_the_longest_key_works(api_client, media):
    assert post(api_client, media("mp4_aac"), key="k" * 255).status_code == 202


# --- the classic API ---------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_classic_upload_with_a_key_answers_the_same_text_again(api_client, user, media):
    classic = APIClient()
    token = classic_token(classic, user)
    source = media("mp4_aac")
    plain = classic_post(classic, token, source, key=None)
    assert plain.content.startswith(b"success! fid=") and not plain.has_header("Idempotent-Replayed")

    first = classic_post(classic, token, source)
    assert first.status_code == 200
    fid = first.content.decode().removeprefix("success! fid=")
    assert first.content == f"success! fid={fid}".encode()
    before = kept(user)
    again = classic_post(classic, token, source)
    assert (again.status_code, again.content, again["Location"]) == (200, first.content, first["Location"])
    assert again["Content-Type"] == first["Content-Type"] == "text/plain; charset=utf-8"
    assert again["Idempotent-Replayed"] == "true"
    assert kept(user) == before

    refused = classic_post(classic, token, source, bitrate_kbps=128)
    assert (refused.status_code, refused["Content-Type"]) == (422, "text/plain; charset=utf-8")
    assert b"different request" in refused.content
    # The native API's key of the same text is the same user's key: another request.
    assert post(api_client, source).status_code == 422
    assert kept(user) == before


@pytest.mark.django_db
def test_classic_refusals_with_a_key_read_as_without_one(user):
    classic = APIClient()
    token = classic_token(classic, user)
    for key in (None, KEY):
        keyed = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        empty = classic.post("/upload", {}, HTTP_AUTHORIZATION=f"Bearer {token}", **keyed)
        assert (empty.status_code, empty.content) == (400, b"exactly 1 file required")
        unparsable = classic.post("/upload", b"{}", content_type="application/json",
                                  HTTP_AUTHORIZATION=f"Bearer {token}", **keyed)
        assert (unparsable.status_code, unparsable.content) == (400, b"exactly 1 file required")
        unsigned = classic.post("/upload", {}, **keyed)
        assert (unsigned.status_code, unsigned.content) == (401, b"missing credentials")
    assert not IdempotencyKey.objects.exists()


# --- tus creation --------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_tus_creation_with_a_key_makes_one_upload(api_client, other_client):
    partials = partial_uploads()
    first = tus_create(api_client)
    assert first.status_code == 201, first.content
    again = tus_create(api_client)
    assert again.status_code == 201
    assert again["Location"] == first["Location"] and again["Upload-Expires"] == first["Upload-Expires"]
    assert again["Tus-Resumable"] == "1.0.0" and again["Idempotent-Replayed"] == "true"
    assert ResumableUpload.objects.count() == 1
    assert len(partial_uploads() - partials) == 1

    for other in (tus_create(api_client, 1001), tus_create(api_client, filename="other.mp4")):
        assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
        assert other["Tus-Resumable"] == "1.0.0"
    assert tus_create(other_client).status_code == 201  # the other user's own key
    assert ResumableUpload.objects.count() == 2


@pytest.mark.django_db
def test_tus_creation_with_upload_sent_again_reads_no_bytes(api_client):
    body = b"\x00" * 100
    extra = {**TUS, "HTTP_UPLOAD_LENGTH": "1000", "HTTP_IDEMPOTENCY_KEY": KEY}
    first = api_client.generic("POST", "/api/uploads/", body, content_type="application/offset+octet-stream", **extra)
    assert (first.status_code, first["Upload-Offset"]) == (201, "100")
    again = api_client.generic("POST", "/api/uploads/", body, content_type="application/offset+octet-stream", **extra)
    assert (again.status_code, again["Location"], again["Upload-Offset"]) == (201, first["Location"], "100")
    assert ResumableUpload.objects.get().offset == 100


# --- end to end ----------------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_tuspy_sending_a_creation_again_resumes_the_same_upload(live_server, live_workers, user, api_client, media):
    source = media("mp4_aac", duration=3.0)
    client = TusClient(f"{live_server.url}/api/uploads/",
                       headers={"Authorization": f"Bearer {AccessToken.for_user(user)}", "Idempotency-Key": KEY})
    first = client.uploader(str(source), chunk_size=16 * 1024, metadata={"filename": "lecture.mp4"})
    first.upload(stop_at=16 * 1024)  # the client "crashes" here, without keeping the upload's URL

    # Started again from scratch, it sends the same creation with the same key: the same upload, which it resumes
    # from the offset HEAD tells (its HEAD and PATCH requests carry the key too, which they ignore).
    second = client.uploader(str(source), chunk_size=16 * 1024, metadata={"filename": "lecture.mp4"})
    second.set_url(second.create_url())
    assert second.url == first.url
    second.offset = second.get_offset()
    assert second.offset == 16 * 1024
    second.upload()
    assert ResumableUpload.objects.count() == 1
    conversion = Conversion.objects.get(owner=user)
    assert wait_finished(api_client, conversion.id)["status"] == "done"


@pytest.mark.e2e
def test_concurrent_posts_with_one_key_make_one_job(live_server, live_workers, user, api_client, media):
    source = media("mp4_aac").read_bytes()
    token = AccessToken.for_user(user)
    start = threading.Barrier(4)
    answers = []

    def send():
        start.wait(timeout=30)
        answers.append(requests.post(
            f"{live_server.url}/api/conversions/", files={"file": ("clip.mp4", source)}, timeout=60,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": KEY},
        ))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert len(answers) == 4
    # Each got the one job, or was told to wait for it; never a job of its own.
    accepted = [answer.json()["id"] for answer in answers if answer.status_code == 202]
    busy = [answer.json()["code"] for answer in answers if answer.status_code == 409]
    assert accepted and len(accepted) + len(busy) == 4, [answer.content for answer in answers]
    assert set(busy) <= {"idempotency_key_in_use"}
    conversion = Conversion.objects.get(owner=user)
    assert set(accepted) == {str(conversion.id)}
    assert wait_finished(api_client, conversion.id)["status"] == "done"
    assert (again := requests.post(
        f"{live_server.url}/api/conversions/", files={"file": ("clip.mp4", source)}, timeout=60,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": KEY},
    )).status_code == 202 and again.json()["id"] == str(conversion.id)
