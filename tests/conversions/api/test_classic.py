"""The classic API contract (plain-text bodies, HTTP Basic login, Bearer JWTs), end to end where a job is made.

    POST /login              HTTP Basic (email:password)  -> 200, the raw JWT
    POST /upload             Bearer JWT, one multipart file -> 200 "success! ..." with the job id
    GET  /download?fid=<id>  Bearer JWT                    -> 200 audio/mpeg
"""

import base64
import json
import re
import uuid
from datetime import timedelta

import pytest
from django.core.files import File
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from conversions import engine
from conversions.models import Conversion
from conversions.services import conversions_expire
from mp3converter.errors import ConversionExpired
from tests.factories import PASSWORD, ConversionFactory, UserFactory
from tests.media import probe_output
from tests.utils import wait_for

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# --- helpers ---------------------------------------------------------------------------------------------------
def basic(email: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()


def bearer(user) -> str:
    return f"Bearer {AccessToken.for_user(user)}"


def assert_text(response, status: int, body: str | None = None) -> str:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("text/plain"), response["Content-Type"]
    text = response.content.decode()
    if body is not None:
        assert text == body
    return text


def upload(client, auth, path, *, field="file", **fields):
    headers = {"HTTP_AUTHORIZATION": auth} if auth is not None else {}
    with open(path, "rb") as source:
        return client.post("/upload", {field: source, **fields}, **headers)


def download(client, auth, fid=None):
    headers = {"HTTP_AUTHORIZATION": auth} if auth is not None else {}
    return client.get("/download", {"fid": fid} if fid is not None else {}, **headers)


def fid_of(response) -> str:
    text = assert_text(response, 200)
    assert text.startswith("success!"), text
    match = UUID_RE.search(text)
    assert match, text
    return match.group(0)


def wait_done(fid: str, timeout: float = 90) -> Conversion:
    def finished():
        return Conversion.objects.filter(pk=fid, status__in=[Conversion.Status.DONE, Conversion.Status.FAILED]).first()

    conversion = wait_for(finished, timeout=timeout, message=f"conversion {fid} to finish")
    assert conversion.status == Conversion.Status.DONE, (conversion.error_code, conversion.error_message)
    return conversion


def emails_to(mailbox, address):
    # Mailbox.to() matches substrings (user1@ would also match user11@): keep exact recipients only.
    return [message for message in mailbox.to(address) if message["To"] == address]


def mp3_body(response) -> bytes:
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"] == "audio/mpeg"
    return b"".join(response.streaming_content)


def assert_mp3(data: bytes, tmp_path, name="out.mp3") -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    probed = probe_output(path)
    assert [stream["codec"] for stream in probed["audio"]] == ["mp3"]
    assert probed["video"] == []
    return probed


def stored(folder: str) -> set[str]:
    return set(default_storage.listdir(folder)[1]) if default_storage.exists(folder) else set()


def done_conversion(owner, mp3_path) -> Conversion:
    """A finished job made directly in the database, with a real MP3 in storage."""
    conversion = ConversionFactory.build(
        owner=owner, original_filename="clip.mp4", status=Conversion.Status.DONE,
        options={"vbr_quality": 2}, finished_at=timezone.now(), duration_seconds=2.0,
    )
    with open(mp3_path, "rb") as mp3:
        conversion.mp3.save("ignored.mp3", File(mp3), save=False)
    conversion.mp3_size = conversion.mp3.size
    conversion.save()
    return conversion


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def staff_user(db):
    return UserFactory(is_staff=True)


@pytest.fixture
def cleanup_files():
    names: list[str] = []
    yield names
    for name in names:
        default_storage.delete(name)


# --- POST /login -----------------------------------------------------------------------------------------------
def test_login_returns_the_raw_jwt(client, user):
    response = client.post("/login", HTTP_AUTHORIZATION=basic(user.email, PASSWORD))
    token = assert_text(response, 200)
    assert len(token.split(".")) == 3 and all(token.split("."))
    assert str(AccessToken(token)["user_id"]) == str(user.pk)
    # ... and the token is accepted by the other endpoints.
    assert_text(download(client, f"Bearer {token}"), 400, "fid is required")


def test_login_without_authorization(client, user):
    response = client.post("/login")
    assert_text(response, 401, "missing credentials")
    assert response["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc.def.ghi",
        "Digest username=x",
        "Basic",
        "Basic ",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    ],
)
def test_login_with_non_basic_or_malformed_credentials(client, user, header):
    response = client.post("/login", HTTP_AUTHORIZATION=header)
    assert_text(response, 401, "missing credentials")
    assert "WWW-Authenticate" in response


@pytest.mark.parametrize("which", ["email", "password"])
def test_login_with_wrong_email_or_password(client, user, which):
    if which == "email":
        email, password = f"nobody-{uuid.uuid4().hex}@example.com", PASSWORD
    else:
        email, password = user.email, "wrong"
    response = client.post("/login", HTTP_AUTHORIZATION=basic(email, password))
    assert_text(response, 401, "invalid credentials")
    assert "WWW-Authenticate" in response


def test_login_of_an_inactive_user_is_refused(client, user):
    user.is_active = False
    user.save()
    assert_text(client.post("/login", HTTP_AUTHORIZATION=basic(user.email, PASSWORD)), 401, "invalid credentials")


def test_login_only_accepts_post(client, user):
    assert_text(client.get("/login", HTTP_AUTHORIZATION=basic(user.email, PASSWORD)), 405)


# --- POST /upload: the whole round trip ------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("field", ["file", "video"])
def test_upload_converts_emails_and_downloads(live_workers, client, user, media, mailbox, tmp_path, field):
    response = upload(client, bearer(user), media("mp4_aac"), field=field)
    fid = fid_of(response)
    conversion = wait_done(fid)
    assert conversion.owner_id == user.pk
    assert conversion.original_filename == "clip.mp4"

    messages = wait_for(lambda: emails_to(mailbox, user.email), timeout=30, message="the notification email")
    assert len(messages) == 1
    assert messages[0]["Subject"] == "MP3 Download"
    text = messages[0].get_payload(decode=True).decode()
    match = re.search(r"mp3 file_id: (\S+) is now ready!", text)
    assert match, text
    assert match.group(1) == fid

    probed = assert_mp3(mp3_body(download(client, bearer(user), match.group(1))), tmp_path)
    assert probed["duration"] == pytest.approx(2.0, abs=0.1)


@pytest.mark.e2e
def test_upload_options_as_form_fields_apply(live_workers, client, user, media, tmp_path):
    fid = fid_of(upload(client, bearer(user), media("mkv_opus"), field="media", bitrate_kbps="128"))
    conversion = wait_done(fid)
    assert conversion.options == {"bitrate_kbps": 128, "title": "clip"}
    probed = assert_mp3(mp3_body(download(client, bearer(user), fid)), tmp_path)
    assert probed["audio"][0]["bitrate_kbps"] == 128


def test_upload_with_invalid_options_is_refused_in_plain_text(client, user, media):
    text = assert_text(upload(client, bearer(user), media("mp4_aac"), bitrate_kbps="100"), 400)
    assert "bitrate_kbps" in text
    assert Conversion.objects.count() == 0


# --- POST /upload: authentication ------------------------------------------------------------------------------
def test_upload_without_authorization(client, user, media):
    response = upload(client, None, media("mp4_aac"))
    assert_text(response, 401, "missing credentials")
    assert "WWW-Authenticate" in response
    assert Conversion.objects.count() == 0


def expired_token(user) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(minutes=1))
    return str(token)


def foreign_token(user) -> str:
    """A well-formed access token for this user, signed with a key this server does not use."""
    backend = TokenBackend("HS256", signing_key="another-servers-key-" + "x" * 40)
    return backend.encode(AccessToken.for_user(user).payload)


def deleted_users_token(user) -> str:
    ghost = UserFactory()
    token = str(AccessToken.for_user(ghost))
    ghost.delete()
    return token


BAD_AUTHORIZATION = {
    "garbage": lambda user: "Bearer not-a-jwt",
    "empty bearer": lambda user: "Bearer ",
    "expired": lambda user: f"Bearer {expired_token(user)}",
    "other key": lambda user: f"Bearer {foreign_token(user)}",
    "refresh token": lambda user: f"Bearer {RefreshToken.for_user(user)}",
    "deleted user": lambda user: f"Bearer {deleted_users_token(user)}",
    "basic instead of bearer": lambda user: basic(user.email, PASSWORD),
}


@pytest.mark.parametrize("kind", BAD_AUTHORIZATION)
def test_upload_with_a_bad_token_is_not_authorized(client, user, media, kind):
    assert_text(upload(client, BAD_AUTHORIZATION[kind](user), media("mp4_aac")), 403, "not authorized")
    assert Conversion.objects.count() == 0


def test_expired_token_helper_really_is_expired_and_otherwise_valid(user):
    # Guards the test above: the expired token fails for its expiry only.
    token = AccessToken(expired_token(user), verify=False)
    assert token["exp"] < timezone.now().timestamp()
    assert str(token["user_id"]) == str(user.pk)


# --- POST /upload: request shape -------------------------------------------------------------------------------
def test_upload_with_no_file(client, user):
    response = client.post("/upload", {"bitrate_kbps": "128"}, HTTP_AUTHORIZATION=bearer(user))
    assert_text(response, 400, "exactly 1 file required")
    assert_text(client.post("/upload", HTTP_AUTHORIZATION=bearer(user)), 400, "exactly 1 file required")


def test_upload_with_two_files_in_two_fields(client, user, media):
    with open(media("mp4_aac"), "rb") as first, open(media("wav"), "rb") as second:
        response = client.post("/upload", {"file": first, "video": second}, HTTP_AUTHORIZATION=bearer(user))
    assert_text(response, 400, "exactly 1 file required")
    assert Conversion.objects.count() == 0


def test_upload_with_two_files_in_one_field(client, user, media):
    with open(media("mp4_aac"), "rb") as first, open(media("wav"), "rb") as second:
        response = client.post("/upload", {"file": [first, second]}, HTTP_AUTHORIZATION=bearer(user))
    assert_text(response, 400, "exactly 1 file required")
    assert Conversion.objects.count() == 0


def test_upload_with_a_json_body(client, user):
    response = client.post(
        "/upload", json.dumps({"file": "clip.mp4"}), content_type="application/json", HTTP_AUTHORIZATION=bearer(user)
    )
    assert_text(response, 400, "exactly 1 file required")


@pytest.mark.parametrize(
    ("spec", "status", "message"),
    [
        ("text", 415, engine.UnsupportedMedia.message),
        ("random_bytes_mp4", 415, engine.UnsupportedMedia.message),
        ("png", 415, engine.UnsupportedMedia.message),
        ("mp4_noaudio", 422, engine.NoAudioStream.message),
    ],
)
def test_upload_of_unusable_media_is_refused_in_plain_text(client, user, media, spec, status, message):
    before = stored("sources")
    assert_text(upload(client, bearer(user), media(spec)), status, message)
    assert Conversion.objects.count() == 0
    assert stored("sources") == before


def test_upload_over_the_size_limit_is_refused_in_plain_text(client, user, media, settings, tmp_path):
    settings.MAX_UPLOAD_MB = 1
    big = tmp_path / "big.mp4"
    big.write_bytes(media("mp4_aac").read_bytes() + b"\0" * (3 * 1024 * 1024))
    before = stored("sources")
    assert_text(upload(client, bearer(user), big), 413, "The file is larger than the 1 MB limit.")
    assert Conversion.objects.count() == 0
    assert stored("sources") == before


# --- CLASSIC_API_STAFF_ONLY ------------------------------------------------------------------------------------
def test_staff_only_refuses_other_users(client, user, media, settings, cleanup_files):
    settings.CLASSIC_API_STAFF_ONLY = True
    conversion = done_conversion(user, media("mp3"))
    cleanup_files.append(conversion.mp3.name)
    response = upload(client, bearer(user), media("mp4_aac"))
    assert_text(response, 401, "not authorized")
    assert "WWW-Authenticate" in response
    assert_text(download(client, bearer(user), str(conversion.id)), 401, "not authorized")
    assert Conversion.objects.count() == 1
    settings.CLASSIC_API_STAFF_ONLY = False
    assert download(client, bearer(user), str(conversion.id)).status_code == 200


@pytest.mark.e2e
def test_staff_only_lets_staff_through(live_workers, client, staff_user, media, settings, tmp_path):
    settings.CLASSIC_API_STAFF_ONLY = True
    fid = fid_of(upload(client, bearer(staff_user), media("wav")))
    wait_done(fid)
    assert_mp3(mp3_body(download(client, bearer(staff_user), fid)), tmp_path)


# --- GET /download ---------------------------------------------------------------------------------------------
def test_download_of_a_finished_job(client, user, media, tmp_path, cleanup_files):
    conversion = done_conversion(user, media("mp3"))
    cleanup_files.append(conversion.mp3.name)
    response = download(client, bearer(user), str(conversion.id))
    body = mp3_body(response)
    assert body == media("mp3").read_bytes()
    assert int(response["Content-Length"]) == len(body)
    assert response["Content-Disposition"] == 'attachment; filename="clip.mp3"'
    assert_mp3(body, tmp_path)


@pytest.mark.parametrize("fid", [None, "", "   "])
def test_download_without_fid(client, user, fid):
    assert_text(download(client, bearer(user), fid), 400, "fid is required")


@pytest.mark.parametrize("fid", [str(uuid.uuid4()), "not-a-uuid", "../../etc/passwd", "1 OR 1=1"])
def test_download_of_an_unknown_fid(client, user, fid):
    assert_text(download(client, bearer(user), fid), 404)


def test_download_of_someone_elses_job(client, user, other_user, media, cleanup_files):
    conversion = done_conversion(other_user, media("mp3"))
    cleanup_files.append(conversion.mp3.name)
    assert_text(download(client, bearer(user), str(conversion.id)), 404)
    assert download(client, bearer(other_user), str(conversion.id)).status_code == 200  # the fid itself is fine


@pytest.mark.parametrize("status", [Conversion.Status.QUEUED, Conversion.Status.PROCESSING, Conversion.Status.FAILED])
def test_download_of_a_job_that_is_not_done(client, user, status):
    conversion = ConversionFactory(owner=user, status=status)
    text = assert_text(download(client, bearer(user), str(conversion.id)), 409)
    assert "not ready" in text and status in text


def test_download_of_an_expired_job_is_gone_with_a_sentence(client, user, media, cleanup_files):
    conversion = done_conversion(user, media("mp3"))
    cleanup_files.append(conversion.mp3.name)
    conversions_expire(now=timezone.now() + timedelta(days=31))
    assert_text(download(client, bearer(user), str(conversion.id)), 410, ConversionExpired.message)
    assert not default_storage.exists(conversion.mp3.name)


def test_download_authentication(client, user, media, cleanup_files):
    conversion = done_conversion(user, media("mp3"))
    cleanup_files.append(conversion.mp3.name)
    response = download(client, None, str(conversion.id))
    assert_text(response, 401, "missing credentials")
    assert "WWW-Authenticate" in response
    assert_text(download(client, f"Bearer {expired_token(user)}", str(conversion.id)), 403, "not authorized")
    assert_text(download(client, f"Bearer {foreign_token(user)}", str(conversion.id)), 403, "not authorized")


# --- import from a URL -----------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_upload_takes_a_source_url_instead_of_a_file(live_workers, user, remote_server, media):
    remote_server.serve("classic.mp4", media("mp4_aac"))
    url = remote_server.url("/files/classic.mp4")
    response = Client().post("/upload", {"source_url": url, "bitrate_kbps": "96"}, HTTP_AUTHORIZATION=bearer(user))
    conversion = wait_done(fid_of(response))
    assert (conversion.source_url, conversion.original_filename, conversion.options["bitrate_kbps"]) == (
        url, "classic.mp4", 96
    )


@pytest.mark.django_db
def test_upload_refuses_a_bad_source_url_or_one_with_a_file(user, media):
    client = Client()
    refused = client.post("/upload", {"source_url": "ftp://example.com/a.mp4"}, HTTP_AUTHORIZATION=bearer(user))
    assert_text(refused, 400, "source_url: Only http and https URLs can be imported.")
    both = upload(client, bearer(user), media("mp4_aac"), source_url="https://example.com/a.mp4")
    assert_text(both, 400, "send either a file or a source_url, not both")
    assert Conversion.objects.count() == 0
