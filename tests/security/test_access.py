"""Who may call what: every endpoint against missing and bad credentials, another user's jobs, the admin, the docs.
Flower's exposure has its own file, tests/security/test_flower.py; bad API keys, tests/security/test_access_keys.py.
Sign-in throttling on every door has its own file, tests/accounts/test_throttling.py.

No worker is needed: jobs are rows made directly in the database with real files in storage, and nothing here
queues work (refused requests never reach the services; on_commit callbacks do not run under the `db` fixture).
"""

import base64
import json
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.tokens import AccessToken as ServiceAccessToken, RefreshToken as ServiceRefreshToken
from accounts.verification import verification_link
from conversions.models import Conversion
from tests.factories import PASSWORD, ConversionFactory, UserFactory

ROOT = Path(__file__).resolve().parents[2]


def basic(email: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()


# --- tokens ----------------------------------------------------------------------------------------------------
def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def expired(user) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(minutes=1))
    return str(token)


def other_key(user) -> str:
    # The user's real claims, signed with a key this server does not use (32+ bytes, a proper HS256 key).
    return jwt.encode(AccessToken.for_user(user).payload, "other-key-" + "k" * 32, algorithm="HS256")


def alg_none(user) -> str:
    return f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(AccessToken.for_user(user).payload)}."


def refresh_as_access(user) -> str:
    return str(RefreshToken.for_user(user))


def deleted_user(user) -> str:
    ghost = UserFactory()
    token = str(AccessToken.for_user(ghost))
    ghost.delete()
    return token


def inactive_user(user) -> str:
    ghost = UserFactory()
    token = str(AccessToken.for_user(ghost))
    ghost.is_active = False
    ghost.save()
    return token


def revoked(user) -> str:
    # Issued by the service's own sign-in, then a password change revoked every earlier token.
    ghost = UserFactory()
    token = str(ServiceAccessToken.for_user(ghost))
    ghost.tokens_valid_after = timezone.now()
    ghost.save()
    return token


BAD_TOKENS = {
    "expired": expired,
    "revoked": revoked,
    "other-key": other_key,
    "alg-none": alg_none,
    "refresh-as-access": refresh_as_access,
    "deleted-user": deleted_user,
    "inactive-user": inactive_user,
}


def test_the_crafted_tokens_carry_the_users_real_claims(user):
    # Guards the matrix below: each bad token fails for the one reason it is named after.
    for kind in ("expired", "other-key", "alg-none"):
        token = BAD_TOKENS[kind](user)
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
        assert str(claims["user_id"]) == str(user.pk) and claims["token_type"] == "access", kind
        assert header["alg"] == ("none" if kind == "alg-none" else "HS256"), kind
    assert alg_none(user).endswith(".")
    assert jwt.decode(refresh_as_access(user), options={"verify_signature": False})["token_type"] == "refresh"


# --- jobs ------------------------------------------------------------------------------------------------------
def make_job(owner, status: str, *, with_mp3: bool = False) -> Conversion:
    """A job row of `owner` in `status`, with its source (and MP3) really stored."""
    conversion = ConversionFactory.build(owner=owner, original_filename="clip.mp4", status=status,
                                        options={"title": "clip"}, source_size=4)
    conversion.source.save("ignored", ContentFile(b"src!"), save=False)
    if status == Conversion.Status.DONE:
        conversion.finished_at = timezone.now()
        conversion.duration_seconds = 2.0
    if status == Conversion.Status.FAILED:
        conversion.error_code, conversion.error_message = "corrupt_media", "The file is damaged."
        conversion.finished_at = timezone.now()
    if with_mp3:
        conversion.mp3.save("ignored.mp3", ContentFile(b"ID3-not-really-an-mp3"), save=False)
        conversion.mp3_size = conversion.mp3.size
    conversion.save()
    return conversion


@pytest.fixture
def jobs(user):
    """User A's jobs: one done (with an MP3), one queued (cancellable), one failed (retryable)."""
    made = {
        "done": make_job(user, Conversion.Status.DONE, with_mp3=True),
        "queued": make_job(user, Conversion.Status.QUEUED),
        "failed": make_job(user, Conversion.Status.FAILED),
    }
    yield made
    for job in made.values():
        for stored in (job.source, job.mp3):
            if stored:
                default_storage.delete(stored.name)


def snapshot(job: Conversion) -> dict:
    job = Conversion.objects.get(pk=job.pk)  # raises if it was deleted
    return {
        "status": job.status, "attempt": job.attempt, "error_code": job.error_code, "finished_at": job.finished_at,
        "source": job.source.name, "mp3": job.mp3.name, "links_generation": job.links_generation,
        "stored": [default_storage.exists(f.name) for f in (job.source, job.mp3) if f],
    }


def native_requests(job_id) -> list[tuple[str, str]]:
    return [
        ("get", "/api/conversions/"),
        ("post", "/api/conversions/"),
        ("get", f"/api/conversions/{job_id}/"),
        ("delete", f"/api/conversions/{job_id}/"),
        ("get", f"/api/conversions/{job_id}/download/"),
        ("get", f"/api/conversions/{job_id}/tracks/1/download/"),
        ("post", f"/api/conversions/{job_id}/cancel/"),
        ("post", f"/api/conversions/{job_id}/retry/"),
        ("post", f"/api/conversions/{job_id}/link/"),
        ("post", f"/api/conversions/{job_id}/links/revoke/"),
        ("post", "/api/conversions/zip/"),
        ("get", "/api/auth/me/"),
        ("post", "/api/auth/password/"),
        ("post", "/api/auth/verify/resend/"),
        ("get", "/api/auth/keys/"),
        ("post", "/api/auth/keys/"),
        ("delete", f"/api/auth/keys/{job_id}/"),
    ]


def call(client, method: str, url: str, **headers):
    if method == "post" and url == "/api/conversions/":
        return client.post(url, {"file": ContentFile(b"not read", name="clip.mp4")}, **headers)
    if url == "/api/conversions/zip/":  # well-formed, naming the owner's done job
        return client.post(url, {"ids": [str(job.id) for job in Conversion.objects.filter(status="done")]}, **headers)
    if url == "/api/auth/password/":  # a well-formed change: only the credentials are wrong
        return client.post(url, {"old_password": PASSWORD, "new_password": "an-unguessable-passphrase-8"}, **headers)
    return getattr(client, method)(url, **headers)


# --- native API: credentials -----------------------------------------------------------------------------------
def test_native_api_with_a_valid_token_works(user, jobs):
    # The control for the matrix below: the same requests with the owner's own token are not refused.
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {AccessToken.for_user(user)}"}
    assert client.get("/api/conversions/", **auth).status_code == 200
    assert client.get(f"/api/conversions/{jobs['done'].id}/", **auth).status_code == 200
    assert client.get(f"/api/conversions/{jobs['done'].id}/download/", **auth).status_code == 200
    assert client.post(f"/api/conversions/{jobs['done'].id}/link/", **auth).status_code == 201
    assert client.post(f"/api/conversions/{jobs['done'].id}/links/revoke/", **auth).status_code == 204
    assert call(client, "post", "/api/conversions/zip/", **auth).status_code == 200
    assert client.get("/api/auth/me/", **auth).json()["email"] == user.email


def test_native_api_without_a_token_is_401_everywhere(user, jobs):
    before = {name: snapshot(job) for name, job in jobs.items()}
    for job in jobs.values():
        for method, url in native_requests(job.id):
            response = call(Client(), method, url)
            assert response.status_code == 401, (method, url, response.status_code)
            assert response.json() == {"detail": "Authentication credentials were not provided."}
            assert response["WWW-Authenticate"].startswith("Bearer"), (method, url)
    assert {name: snapshot(job) for name, job in jobs.items()} == before
    assert Conversion.objects.count() == 3
    user.refresh_from_db()
    assert user.check_password(PASSWORD) and user.tokens_valid_after is None


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_native_api_with_a_bad_token_is_401_everywhere(user, jobs, kind):
    token = BAD_TOKENS[kind](user)
    before = {name: snapshot(job) for name, job in jobs.items()}
    for job in jobs.values():
        for method, url in native_requests(job.id):
            response = call(Client(), method, url, HTTP_AUTHORIZATION=f"Bearer {token}")
            assert response.status_code == 401, (kind, method, url, response.status_code, response.content)
            assert "WWW-Authenticate" in response
    # Logout takes its refresh token as the credential; a bad Bearer token alongside is still refused.
    logout = Client().post("/api/auth/logout/", {"refresh": str(ServiceRefreshToken.for_user(user))},
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert logout.status_code == 401, (kind, logout.content)
    assert {name: snapshot(job) for name, job in jobs.items()} == before
    assert Conversion.objects.count() == 3
    user.refresh_from_db()
    assert user.check_password(PASSWORD) and user.tokens_valid_after is None


# --- logout and the verification link ------------------------------------------------------------------------
def test_logout_needs_a_real_refresh_token_and_revokes_only_that_one(user, other_user):
    assert Client().post("/api/auth/logout/").status_code == 400
    for kind in ("expired", "other-key", "alg-none"):
        forged = BAD_TOKENS[kind](user)  # access-shaped claims: never a refresh token
        assert Client().post("/api/auth/logout/", {"refresh": forged}).status_code == 401, kind
    mine, theirs = ServiceRefreshToken.for_user(user), ServiceRefreshToken.for_user(other_user)
    # Decision: whoever holds a refresh token may end it (it is the credential); it ends nothing else.
    assert Client().post("/api/auth/logout/", {"refresh": str(theirs)}).status_code == 204
    refreshed = Client().post("/api/auth/token/refresh/", {"refresh": str(mine)})
    assert refreshed.status_code == 200
    assert Client().post("/api/auth/token/refresh/", {"refresh": str(theirs)}).status_code == 401


def test_the_verification_link_confirms_only_the_account_it_names(db):
    named, bystander = UserFactory(email_verified=False), UserFactory(email_verified=False)
    assert Client().get("/api/auth/verify/").status_code == 400
    assert Client().get("/api/auth/verify/", {"token": "forged"}).status_code == 400
    link = verification_link(named)
    # A Bearer token of another user changes nothing: the link alone decides.
    page = Client().get(link.removeprefix("http://testserver"),
                        HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(bystander)}")
    assert page.status_code == 200
    named.refresh_from_db()
    bystander.refresh_from_db()
    assert (named.email_verified, bystander.email_verified) == (True, False)


# --- classic API: credentials ----------------------------------------------------------------------------------
def classic_requests(job_id) -> list[tuple[str, str, dict]]:
    return [
        ("post", "/upload", {"file": ContentFile(b"not read", name="clip.mp4")}),
        ("get", "/download", {"fid": str(job_id)}),
    ]


def test_classic_api_without_a_token_is_401_missing_credentials(user, jobs):
    for method, url, data in classic_requests(jobs["done"].id):
        response = getattr(Client(), method)(url, data)
        assert response.status_code == 401, (url, response.status_code)
        assert response.content == b"missing credentials"
        assert "WWW-Authenticate" in response
    assert Conversion.objects.count() == 3


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_classic_api_with_a_bad_token_is_403_not_authorized(user, jobs, kind):
    token = BAD_TOKENS[kind](user)
    for method, url, data in classic_requests(jobs["done"].id):
        response = getattr(Client(), method)(url, data, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 403, (kind, url, response.status_code, response.content)
        assert response.content == b"not authorized"
    assert Conversion.objects.count() == 3
    # The control: the owner's own token downloads the same job.
    own = Client().get("/download", {"fid": str(jobs["done"].id)},
                       HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    assert own.status_code == 200


# --- another user's jobs ---------------------------------------------------------------------------------------
def test_another_user_gets_404_for_every_job_and_changes_nothing(user, other_user, other_client, api_client, jobs):
    before = {name: snapshot(job) for name, job in jobs.items()}
    listing = other_client.get("/api/conversions/")
    assert listing.status_code == 200
    assert listing.json()["count"] == 0 and listing.json()["results"] == []

    classic = Client()
    for name, job in jobs.items():
        for method, url in [
            ("get", f"/api/conversions/{job.id}/"),
            ("get", f"/api/conversions/{job.id}/download/"),
            ("get", f"/api/conversions/{job.id}/tracks/1/download/"),
            ("post", f"/api/conversions/{job.id}/cancel/"),
            ("post", f"/api/conversions/{job.id}/retry/"),
            ("post", f"/api/conversions/{job.id}/link/"), ("post", f"/api/conversions/{job.id}/links/revoke/"),
            ("delete", f"/api/conversions/{job.id}/"),
        ]:
            response = getattr(other_client, method)(url)
            assert response.status_code == 404, (name, method, url, response.status_code)
            assert response.json() == {"detail": "No conversion with this id."}
        assert other_client.post("/api/conversions/zip/", {"ids": [str(job.id)]}).json()["code"] == "not_found", name
        response = classic.get("/download", {"fid": str(job.id)},
                               HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(other_user)}")
        assert response.status_code == 404, (name, response.status_code)
        assert response.content == b"not found"

    # A's jobs: all there, same states, same attempts, every file still stored.
    after = {name: snapshot(job) for name, job in jobs.items()}
    assert after == before
    assert all(all(state["stored"]) for state in after.values())
    assert {item["id"] for item in api_client.get("/api/conversions/").json()["results"]} == {
        str(job.id) for job in jobs.values()
    }
    assert api_client.get(f"/api/conversions/{jobs['done'].id}/download/").status_code == 200


# --- admin -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/admin/", "/admin/conversions/conversion/", "/admin/accounts/user/"])
def test_admin_sends_anonymous_and_non_staff_users_to_the_login_page(user, url):
    anonymous = Client().get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")

    signed_in = Client()
    signed_in.force_login(user)  # a normal user with a real session
    response = signed_in.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")

    # A JWT means nothing to the admin either.
    with_token = Client().get(url, HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    assert with_token.status_code == 302
    assert with_token["Location"].startswith("/admin/login/")


def test_admin_lets_staff_in(db):
    staff = Client()
    staff.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert staff.get("/admin/").status_code == 200
    assert staff.get("/admin/conversions/conversion/").status_code == 200


# --- docs and health -------------------------------------------------------------------------------------------
def test_schema_and_docs_are_public_documentation(db):
    # Decision: the OpenAPI schema and Swagger UI are public (drf-spectacular's AllowAny default), like any
    # published API documentation. They describe the API; no data is reachable through them.
    schema = Client().get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/conversions/" in schema.content
    docs = Client().get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_health_endpoints_are_public_and_reveal_no_details(db):
    assert Client().get("/healthz").json() == {"status": "ok"}
    body = Client().get("/readyz").json()
    assert set(body) == {"status", "checks"}
    assert set(body["checks"]) == {"database", "broker", "storage"}
    # Only "ok" or an exception's class name: no addresses, credentials or paths.
    for value in body["checks"].values():
        assert value == "ok" or (value.startswith("unavailable: ") and " " not in value[len("unavailable: "):])
