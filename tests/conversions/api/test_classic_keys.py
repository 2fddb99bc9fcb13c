"""The classic `/upload` and `/download` with a personal API key in place of the JWT (`Bearer mp3k_…`).

Its JWT answers stay the contract (tests/conversions/api/test_classic.py); a refused key is answered as on the native
API, 401, with the sentence in plain text.
"""

import pytest
from django.core.files.storage import default_storage
from django.test import Client

from accounts.apikeys import ACCOUNT_DISABLED, ApiKeyInvalid, ApiKeyRevoked, key_parse
from accounts.models import ApiKey
from accounts.services import api_key_revoke
from conversions.models import Conversion
from tests.conversions.api.test_classic import assert_text, done_conversion, download, fid_of, mp3_body, upload
from tests.fixtures.users import api_key_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def stored_files():
    names: list[str] = []
    yield names
    for name in names:
        default_storage.delete(name)


def test_upload_with_a_key_makes_the_owners_job(client, user, api_key, media, stored_files):
    fid = fid_of(upload(client, f"Bearer {api_key}", media("mp4_aac")))
    job = Conversion.objects.get(pk=fid)
    stored_files.append(job.source.name)
    assert job.owner == user and job.status == Conversion.Status.QUEUED
    assert ApiKey.objects.get(user=user).last_used_at is not None


def test_download_with_a_key(client, user, api_key, media, stored_files):
    conversion = done_conversion(user, media("mp3"))
    stored_files.append(conversion.mp3.name)
    response = download(client, f"Bearer {api_key}", str(conversion.id))
    assert response.status_code == 200
    assert mp3_body(response) == media("mp3").read_bytes()


def test_a_key_downloads_only_its_owners_jobs(client, user, other_user, media, stored_files):
    conversion = done_conversion(other_user, media("mp3"))
    stored_files.append(conversion.mp3.name)
    assert_text(download(client, f"Bearer {api_key_of(user)}", str(conversion.id)), 404, "not found")


def test_a_revoked_key_is_401_with_the_sentence(client, user, media, stored_files):
    key = api_key_of(user)
    conversion = done_conversion(user, media("mp3"))
    stored_files.append(conversion.mp3.name)
    api_key_revoke(api_key=ApiKey.objects.get(user=user))
    for response in (upload(client, f"Bearer {key}", media("mp4_aac")), download(client, f"Bearer {key}", str(conversion.id))):
        assert_text(response, 401, ApiKeyRevoked.message)
        assert "WWW-Authenticate" in response
    assert Conversion.objects.count() == 1


def test_a_key_that_matches_none_is_401_with_the_sentence(client, user, media):
    lookup, secret = key_parse(api_key_of(user))
    wrong = f"mp3k_{lookup}_{'A' * 43 if secret != 'A' * 43 else 'B' * 43}"
    assert_text(upload(client, f"Bearer {wrong}", media("mp4_aac")), 401, ApiKeyInvalid.message)
    assert_text(download(client, "Bearer mp3k_short", "any"), 401, ApiKeyInvalid.message)
    assert Conversion.objects.count() == 0


def test_a_key_of_a_deactivated_account_is_401(client, user, api_key, media):
    user.is_active = False
    user.save()
    assert_text(upload(client, f"Bearer {api_key}", media("mp4_aac")), 401, ACCOUNT_DISABLED)
    assert Conversion.objects.count() == 0


def test_staff_only_refuses_a_users_key_as_it_refuses_their_jwt(client, user, api_key, media, settings):
    settings.CLASSIC_API_STAFF_ONLY = True
    assert_text(upload(client, f"Bearer {api_key}", media("mp4_aac")), 401, "not authorized")
    assert Conversion.objects.count() == 0
