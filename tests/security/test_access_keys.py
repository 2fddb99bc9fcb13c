"""Who may call what with a personal API key: every way a key can be wrong, against every endpoint of both APIs
(the endpoints and jobs of tests/security/test_access.py), and the owner's own key as the control."""

import pytest
from django.test import Client

from accounts.apikeys import ApiKeyInvalid, ApiKeyRevoked, key_parse
from accounts.models import ApiKey
from accounts.services import api_key_create, api_key_revoke
from conversions.models import Conversion
from tests.factories import UserFactory
from tests.security.test_access import call, classic_requests, jobs, native_requests, snapshot  # noqa: F401 (fixture)


def key_of(user) -> str:
    return api_key_create(user=user, name="matrix")[1]


def wrong_secret(user) -> str:
    lookup, secret = key_parse(key_of(user))
    return f"mp3k_{lookup}_{'A' * 43 if secret != 'A' * 43 else 'B' * 43}"


def revoked_key(user) -> str:
    key = key_of(user)
    api_key_revoke(api_key=ApiKey.objects.get(lookup=key_parse(key)[0]))
    return key


def deleted_users_key(user) -> str:
    ghost = UserFactory()
    key = key_of(ghost)
    ghost.delete()  # its keys go with it
    return key


def inactive_users_key(user) -> str:
    ghost = UserFactory()
    key = key_of(ghost)
    ghost.is_active = False
    ghost.save()
    return key


# kind → (the key, the code it is refused with)
BAD_KEYS = {
    "unknown": (lambda user: f"mp3k_{'0' * 12}_{'A' * 43}", ApiKeyInvalid),
    "wrong-secret": (wrong_secret, ApiKeyInvalid),
    "cut-short": (lambda user: key_of(user)[:-1], ApiKeyInvalid),
    "revoked": (revoked_key, ApiKeyRevoked),
    "deleted-user": (deleted_users_key, ApiKeyInvalid),
    "inactive-user": (inactive_users_key, ApiKeyInvalid),
}


@pytest.mark.parametrize("kind", BAD_KEYS)
def test_a_bad_api_key_is_401_everywhere_on_both_apis(user, jobs, kind):
    make, error = BAD_KEYS[kind]
    key = make(user)
    before = {name: snapshot(job) for name, job in jobs.items()}
    keys_before = set(ApiKey.objects.values_list("id", "revoked_at"))
    # Every endpoint of every job for one kind; for the others, the done job's. What tells the kinds apart is the
    # key, refused by the authentication class before any endpoint's own code runs.
    for job in jobs.values() if kind == "unknown" else [jobs["done"]]:
        for method, url in native_requests(job.id):
            response = call(Client(), method, url, HTTP_AUTHORIZATION=f"Bearer {key}")
            assert response.status_code == 401, (kind, method, url, response.status_code, response.content)
            assert response.json()["code"] == error.code, (kind, method, url)
            assert response["WWW-Authenticate"].startswith("Bearer"), (kind, method, url)
    for method, url, data in classic_requests(jobs["done"].id):
        response = getattr(Client(), method)(url, data, HTTP_AUTHORIZATION=f"Bearer {key}")
        assert response.status_code == 401, (kind, url, response.status_code, response.content)
        assert response["Content-Type"].startswith("text/plain") and "API key" in response.content.decode()
    assert {name: snapshot(job) for name, job in jobs.items()} == before
    assert Conversion.objects.count() == 3
    assert set(ApiKey.objects.values_list("id", "revoked_at")) == keys_before  # no key made or revoked either


def test_the_owners_api_key_is_the_control_for_the_bad_keys(user, jobs):
    key = key_of(user)
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    assert client.get("/api/conversions/", **auth).json()["count"] == 3
    assert client.get(f"/api/conversions/{jobs['done'].id}/download/", **auth).status_code == 200
    assert client.get("/download", {"fid": str(jobs["done"].id)}, **auth).status_code == 200
