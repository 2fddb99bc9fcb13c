"""The per-user limits and the verification gate through both APIs: real uploads of generated media, the real
database and storage. No worker runs (on_commit does not fire under `db`), so accepted jobs stay queued."""

import socket
import threading
from datetime import timedelta
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from django.core.files.storage import default_storage
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from conversions.models import Conversion, UploadRecord
from tests.conversions.api.helpers import classic_token, job_url, upload
from tests.factories import ConversionFactory, UserFactory
from tests.fixtures.users import bearer_client
from tests.utils import stored_files

MB = 1024 * 1024
Status = Conversion.Status


@pytest.fixture(autouse=True)
def _defaults_and_clean_storage(settings):
    """The shipped defaults (the suite's environment raises them), and no stored file left behind."""
    settings.QUOTA_ACTIVE_JOBS, settings.QUOTA_UPLOADS_PER_HOUR, settings.QUOTA_STORAGE_MB = 3, 30, 10240
    before = stored_files()
    yield
    for name in stored_files() - before:
        default_storage.delete(name)


class Native:
    def __init__(self, user):
        self.client = bearer_client(user)

    def upload(self, path):
        return upload(self.client, path)

    @staticmethod
    def accepted(response) -> bool:
        return response.status_code == 202

    @staticmethod
    def refusal(response) -> tuple[int, str, str]:
        body = response.json()
        return response.status_code, body["code"], body["detail"]


class Classic:
    def __init__(self, user):
        self.client = APIClient()
        self.token = classic_token(self.client, user)

    def upload(self, path):
        with open(path, "rb") as source:
            return self.client.post("/upload", {"file": source}, format="multipart",
                                    HTTP_AUTHORIZATION=f"Bearer {self.token}")

    @staticmethod
    def accepted(response) -> bool:
        return response.status_code == 200 and response.content.startswith(b"success! fid=")

    @staticmethod
    def refusal(response) -> tuple[int, str, str]:
        assert response["Content-Type"].startswith("text/plain")
        # The classic API answers the sentence alone; the code is the native API's to show.
        codes = {429: "rate_limited", 413: "quota_exceeded", 403: "email_not_verified"}
        return response.status_code, codes.get(response.status_code, "?"), response.content.decode()


APIS = {"native": Native, "classic": Classic}


@pytest.fixture(params=list(APIS))
def api(request):
    return APIS[request.param]


def refused_and_kept_nothing(surface, user, path, status, code):
    """Upload `path`, expect a refusal, and check that it left no row, no stored file, no upload counted."""
    rows, files, uploads = Conversion.objects.filter(owner=user).count(), stored_files(), user_uploads(user)
    response = surface.upload(path)
    got_status, got_code, sentence = surface.refusal(response)
    assert (got_status, got_code) == (status, code), response.content
    assert Conversion.objects.filter(owner=user).count() == rows
    assert stored_files() == files
    assert user_uploads(user) == uploads
    return response, sentence


def user_uploads(user) -> int:
    return UploadRecord.objects.filter(owner=user).count()


# --- active jobs ------------------------------------------------------------------------------------------------
def test_active_jobs_limit(db, api, media):
    user = UserFactory(quota_active_jobs=2)
    surface = api(user)
    for _ in range(2):
        assert surface.accepted(surface.upload(media("mp4_aac")))
    response, sentence = refused_and_kept_nothing(surface, user, media("mp4_aac"), 429, "rate_limited")
    assert sentence == (
        "You already have 2 conversions queued or running, the most your account allows at once. Wait for one to finish."
    )
    assert response["Retry-After"] == "60"
    # One finishes, and there is room again.
    Conversion.objects.filter(pk=Conversion.objects.filter(owner=user).first().pk).update(status=Status.DONE)
    assert surface.accepted(surface.upload(media("mp4_aac")))


def test_retry_is_held_to_the_active_jobs_limit(db, media):
    user = UserFactory(quota_active_jobs=1)
    client = bearer_client(user)
    queued = upload(client, media("mp4_aac")).json()
    failed = ConversionFactory(owner=user, status=Status.FAILED)
    response = client.post(job_url(failed.id, "retry"))
    assert response.status_code == 429
    assert response.json() == {
        "code": "rate_limited",
        "detail": "You already have 1 conversion queued or running, the most your account allows at once. "
        "Wait for one to finish.",
    }
    assert response["Retry-After"] == "60"
    assert Conversion.objects.get(pk=failed.pk).status == Status.FAILED
    assert client.post(job_url(queued["id"], "cancel")).status_code == 202
    assert client.post(job_url(failed.id, "retry")).json()["status"] == "queued"


# --- uploads per hour -------------------------------------------------------------------------------------------
def test_uploads_per_hour_limit_survives_deleting_the_jobs(db, api, media):
    user = UserFactory(quota_uploads_per_hour=2)
    surface = api(user)
    for _ in range(2):
        assert surface.accepted(surface.upload(media("mp4_aac")))
        assert bearer_client(user).delete(job_url(Conversion.objects.get(owner=user).id)).status_code == 204
    response, sentence = refused_and_kept_nothing(surface, user, media("mp4_aac"), 429, "rate_limited")
    assert sentence.startswith("You have made 2 uploads in the last hour, and your account allows 2 per hour. Try again in ")
    assert 3590 <= int(response["Retry-After"]) <= 3600  # when the first upload leaves the window


def test_retry_after_is_when_the_oldest_upload_leaves_the_window(db, api, media):
    user = UserFactory(quota_uploads_per_hour=2)
    UploadRecord.objects.create(owner=user, created_at=timezone.now() - timedelta(minutes=59, seconds=30))
    UploadRecord.objects.create(owner=user, created_at=timezone.now() - timedelta(minutes=10))
    response, sentence = refused_and_kept_nothing(api(user), user, media("mp4_aac"), 429, "rate_limited")
    assert 25 <= int(response["Retry-After"]) <= 30
    assert sentence.endswith(f"Try again in {response['Retry-After']} seconds.")


# --- storage ----------------------------------------------------------------------------------------------------
def test_storage_limit_with_the_received_size(db, api, media):
    path = media("mp4_aac")
    user = UserFactory(quota_storage_mb=1)
    # Room left: less than the file, but within the form framing the early check allows for.
    ConversionFactory(owner=user, status=Status.DONE, source="sources/a", source_size=MB // 2,
                      mp3_size=MB // 2 - path.stat().st_size + 1)
    _, sentence = refused_and_kept_nothing(api(user), user, path, 413, "quota_exceeded")
    used = MB - path.stat().st_size + 1
    assert sentence == (
        f"This upload ({-(-path.stat().st_size // 1024)} KB) would pass your storage limit of 1 MB: you already store "
        f"{-(-used // 1024)} KB. Delete some conversions and try again."
    )
    # Deleting a job makes room.
    Conversion.objects.filter(owner=user).delete()
    assert api(user).accepted(api(user).upload(path))


def test_storage_limit_from_the_declared_length(db, api, media):
    path = media("mp4_aac", duration=20.0)
    assert path.stat().st_size > 2 * 64 * 1024
    user = UserFactory(quota_storage_mb=1)
    ConversionFactory(owner=user, status=Status.DONE, source="sources/a", source_size=MB - 1024)
    _, sentence = refused_and_kept_nothing(api(user), user, path, 413, "quota_exceeded")
    assert "would pass your storage limit of 1 MB: you already store 1.0 MB." in sentence


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def raw_upload(path: str, token: str, length: int) -> bytes:
    """Send an upload's headers, declaring `length` bytes, and none of its body, to the project's WSGI application
    behind a real HTTP server; read the status line and headers it answers with."""
    server = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=QuietHandler)

    def serve_one():
        try:
            server.handle_request()
        finally:
            connection.close()

    thread = threading.Thread(target=serve_one)
    thread.start()
    try:
        with socket.create_connection(server.server_address, timeout=20) as client:
            client.sendall(
                f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\n\r\n".encode()
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = client.recv(65536)  # times out (and fails) if the application waits for the body instead
                assert chunk, answer
                answer += chunk
        return answer
    finally:
        thread.join(30)
        server.server_close()


@pytest.mark.parametrize("path", ["/api/conversions/", "/upload"])
@pytest.mark.parametrize(
    ("user_fields", "status", "retry_after"),
    [
        ({"quota_storage_mb": 1}, 413, False),
        ({"quota_active_jobs": 0}, 429, True),
        ({"email_verified": False}, 403, False),
    ],
)
def test_refused_from_the_headers_before_the_body_is_read(transactional_db, path, user_fields, status, retry_after):
    user = UserFactory(**user_fields)
    answer = raw_upload(path, str(AccessToken.for_user(user)), length=50 * MB)
    head = answer.split(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith(f"http/1.0 {status} "), head
    assert ("\r\nretry-after: " in head) == retry_after
    assert not Conversion.objects.exists()


# --- the verification gate --------------------------------------------------------------------------------------
def test_an_unverified_account_may_upload_once_verified(db, api, media):
    user = UserFactory(email_verified=False)
    _, sentence = refused_and_kept_nothing(api(user), user, media("mp4_aac"), 403, "email_not_verified")
    assert sentence == "Confirm your email address first: follow the link in the email we sent you."
    user.email_verified = True
    user.save()
    assert api(user).accepted(api(user).upload(media("mp4_aac")))


def test_staff_are_verified_like_anyone_but_have_no_limits(db, api, media, settings):
    settings.QUOTA_ACTIVE_JOBS = settings.QUOTA_UPLOADS_PER_HOUR = settings.QUOTA_STORAGE_MB = 0
    staff = UserFactory(is_staff=True, email_verified=False)
    refused_and_kept_nothing(api(staff), staff, media("mp4_aac"), 403, "email_not_verified")
    staff.email_verified = True
    staff.save()
    assert api(staff).accepted(api(staff).upload(media("mp4_aac")))
    normal = UserFactory()
    refused_and_kept_nothing(api(normal), normal, media("mp4_aac"), 429, "rate_limited")


def test_a_users_own_limit_overrides_the_default(db, api, media, settings):
    settings.QUOTA_ACTIVE_JOBS = 1
    generous, default = UserFactory(quota_active_jobs=2), UserFactory()
    for _ in range(2):
        assert api(generous).accepted(api(generous).upload(media("mp4_aac")))
    assert api(default).accepted(api(default).upload(media("mp4_aac")))
    _, sentence = refused_and_kept_nothing(api(default), default, media("mp4_aac"), 429, "rate_limited")
    assert sentence.startswith("You already have 1 conversion queued or running")


# --- /api/auth/me/ ----------------------------------------------------------------------------------------------
def test_me_shows_verification_limits_and_usage(db, media):
    user = UserFactory(quota_storage_mb=500)
    client = bearer_client(user)
    job = upload(client, media("mp4_aac")).json()
    ConversionFactory(owner=user, status=Status.DONE, source="sources/a", source_size=1000, mp3_size=300)
    UploadRecord.objects.create(owner=user, created_at=timezone.now() - timedelta(hours=2))  # outside the window
    me = client.get("/api/auth/me/").json()
    assert me["email_verified"] is True
    assert me["limits"] == {"active_jobs": 3, "uploads_per_hour": 30, "storage_mb": 500}
    assert me["usage"] == {
        "active_jobs": 1, "uploads_last_hour": 1, "storage_bytes": media("mp4_aac").stat().st_size + 1300,
    }
    assert client.delete(job_url(job["id"])).status_code == 204
    assert client.get("/api/auth/me/").json()["usage"] == {"active_jobs": 0, "uploads_last_hour": 1, "storage_bytes": 1300}
    staff = bearer_client(UserFactory(is_staff=True)).get("/api/auth/me/").json()
    assert staff["limits"] is None
    assert staff["usage"] == {"active_jobs": 0, "uploads_last_hour": 0, "storage_bytes": 0}
