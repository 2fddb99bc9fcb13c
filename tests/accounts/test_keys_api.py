"""Personal API keys through the native API: make one (shown once), list them (never the key), revoke one, and use
one wherever a JWT works. The classic API with keys: tests/conversions/api/test_classic_keys.py; failed keys against
the sign-in limit: tests/accounts/test_throttling.py."""

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.apikeys import ACCOUNT_DISABLED, ApiKeyInvalid, ApiKeyRevoked, key_parse
from accounts.models import ApiKey
from conversions.models import Conversion
from tests.conversions.api.helpers import mp3_bytes, upload
from tests.factories import DoneConversionFactory
from tests.fixtures.users import api_key_of

pytestmark = pytest.mark.django_db
KEYS = "/api/auth/keys/"


def with_key(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def assert_refused(response, error) -> None:
    assert response.status_code == 401, (response.status_code, response.content)
    assert response.json() == {"code": error.code.value, "detail": error.message}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


# --- make, list, revoke ----------------------------------------------------------------------------------------------
def test_a_new_key_is_shown_once_and_never_again(api_client, user):
    made = api_client.post(KEYS, {"name": "backup script"})
    assert made.status_code == 201, made.content
    body = made.json()
    key = body["key"]
    assert set(body) == {"id", "name", "prefix", "created_at", "last_used_at", "key"}
    assert body["name"] == "backup script" and body["last_used_at"] is None
    assert key.startswith(body["prefix"] + "_") and key_parse(key) is not None
    assert made["Cache-Control"] == "no-store"  # not even a cache keeps it

    listed = api_client.get(KEYS)
    assert listed.status_code == 200
    assert listed.json() == [{key_field: body[key_field] for key_field in ("id", "name", "prefix", "created_at")}
                             | {"last_used_at": None}]
    secret = key_parse(key)[1]
    assert secret not in listed.content.decode()
    assert secret not in api_client.get(f"{KEYS}{body['id']}/").content.decode()  # no detail view hands it out
    assert ApiKey.objects.get(pk=body["id"]).user == user


def test_the_key_made_works_at_once(api_client, user):
    key = api_client.post(KEYS, {"name": "ci"}, format="json").json()["key"]
    me = with_key(key).get("/api/auth/me/")
    assert me.status_code == 200 and me.json()["email"] == user.email


@pytest.mark.parametrize("data", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}])
def test_a_key_needs_a_name(api_client, data):
    response = api_client.post(KEYS, data, format="json")
    assert response.status_code == 400 and "name" in response.json()
    assert ApiKey.objects.count() == 0


def test_the_list_is_your_working_keys_only(api_client, user, other_user):
    api_key_of(user, "mine")
    api_key_of(other_user, "theirs")
    revoked = api_client.post(KEYS, {"name": "revoked"}).json()["id"]
    assert api_client.delete(f"{KEYS}{revoked}/").status_code == 204
    assert [item["name"] for item in api_client.get(KEYS).json()] == ["mine"]


def test_a_revoked_key_answers_401_with_a_sentence_from_then_on(api_client):
    made = api_client.post(KEYS, {"name": "old laptop"}).json()
    client = with_key(made["key"])
    assert client.get("/api/conversions/").status_code == 200
    assert api_client.delete(f"{KEYS}{made['id']}/").status_code == 204
    for method, url in [("get", "/api/conversions/"), ("get", "/api/auth/me/"), ("get", KEYS), ("post", KEYS)]:
        assert_refused(getattr(client, method)(url), ApiKeyRevoked)
    assert "revoked" in ApiKeyRevoked.message
    assert api_client.delete(f"{KEYS}{made['id']}/").status_code == 404  # revoked already


def test_a_key_revokes_itself(key_client, user):
    [own] = key_client.get(KEYS).json()
    assert key_client.delete(f"{KEYS}{own['id']}/").status_code == 204
    assert_refused(key_client.get(KEYS), ApiKeyRevoked)


def test_another_users_key_id_is_404_and_the_key_keeps_working(api_client, other_user):
    theirs = api_key_of(other_user, "theirs")
    their_id = ApiKey.objects.get(user=other_user).id
    for key_id in (their_id, "00000000-0000-0000-0000-000000000000", "not-an-id"):
        response = api_client.delete(f"{KEYS}{key_id}/")
        assert response.status_code == 404, key_id
        assert response.json() == {"detail": "No API key with this id."}
    assert with_key(theirs).get("/api/auth/me/").json()["email"] == other_user.email


def test_keys_need_a_credential():
    for method, url in [("get", KEYS), ("post", KEYS), ("delete", f"{KEYS}00000000-0000-0000-0000-000000000000/")]:
        response = getattr(APIClient(), method)(url)
        assert response.status_code == 401, (method, url)
        assert response["WWW-Authenticate"].startswith("Bearer")


# --- using a key -------------------------------------------------------------------------------------------------------
def test_a_key_works_on_the_conversions_api(key_client, user, media):
    done = DoneConversionFactory(owner=user, mp3_data=media("mp3").read_bytes())
    try:
        listing = key_client.get("/api/conversions/")
        assert listing.status_code == 200 and [job["id"] for job in listing.json()["results"]] == [str(done.id)]
        assert key_client.get(f"/api/conversions/{done.id}/").json()["status"] == "done"
        download = key_client.get(f"/api/conversions/{done.id}/download/")
        assert download.status_code == 200 and mp3_bytes(download) == media("mp3").read_bytes()

        uploaded = upload(key_client, media("mp4_aac"))
        assert uploaded.status_code == 202, uploaded.content
        assert Conversion.objects.get(pk=uploaded.json()["id"]).owner == user
    finally:
        for job in Conversion.objects.filter(owner=user):
            for stored in (job.source, job.mp3):
                if stored:
                    default_storage.delete(stored.name)


def test_a_key_that_matches_none_is_401(user):
    key = api_key_of(user)
    lookup, secret = key_parse(key)
    other_secret = "A" * 43 if secret != "A" * 43 else "B" * 43
    for attempt in (f"mp3k_{lookup}_{other_secret}", key[:-1], "mp3k_", "mp3k_not-even-close"):
        assert_refused(with_key(attempt).get("/api/conversions/"), ApiKeyInvalid)


def test_a_key_of_a_deactivated_account_is_401(user, api_key):
    user.is_active = False
    user.save()
    response = with_key(api_key).get("/api/conversions/")
    assert response.status_code == 401
    assert response.json() == {"code": "api_key_invalid", "detail": ACCOUNT_DISABLED}


def test_a_jwt_still_works_beside_keys(api_client, api_key):
    assert api_client.get(KEYS).status_code == 200
    assert APIClient().get(KEYS, HTTP_AUTHORIZATION="Bearer not-a-jwt").status_code == 401  # still the JWT's 401


def test_last_used_is_recorded_without_a_write_per_request(key_client, user):
    key_client.get("/api/auth/me/")
    first = ApiKey.objects.get(user=user).last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert key_client.get("/api/auth/me/").status_code == 200
    table = ApiKey._meta.db_table
    updates = [query["sql"] for query in queries if query["sql"].startswith("UPDATE") and table in query["sql"]]
    assert updates == []
    assert ApiKey.objects.get(user=user).last_used_at == first
    listed = key_client.get(KEYS).json()
    assert listed[0]["last_used_at"] is not None
