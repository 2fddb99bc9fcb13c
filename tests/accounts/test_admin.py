"""The Django admin's API keys, as an operator uses it: listed and searchable, read-only, revocable, and never showing
a key or its hash."""

import pytest
from django.test import Client

from accounts.apikeys import key_parse
from accounts.models import ApiKey
from accounts.services import api_key_create
from tests.factories import UserFactory

CHANGELIST = "/admin/accounts/apikey/"


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_the_list_shows_keys_but_no_secret_nor_hash(admin_client):
    owner = UserFactory(email="owner@example.com")
    api_key, key = api_key_create(user=owner, name="nightly backup")
    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200
    text = page.content.decode()
    assert "nightly backup" in text and "owner@example.com" in text and api_key.prefix in text
    assert key_parse(key)[1] not in text and api_key.secret_hash not in text
    assert list(admin_client.get(CHANGELIST, {"q": "owner@example.com"}).context["cl"].result_list) == [api_key]
    assert list(admin_client.get(CHANGELIST, {"revoked_at__isempty": "1"}).context["cl"].result_list) == [api_key]
    assert list(admin_client.get(CHANGELIST, {"revoked_at__isempty": "0"}).context["cl"].result_list) == []


def test_a_keys_page_is_read_only_and_keys_are_not_made_here(admin_client, user):
    api_key, key = api_key_create(user=user, name="ci")
    page = admin_client.get(f"{CHANGELIST}{api_key.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert key_parse(key)[1] not in text and api_key.secret_hash not in text
    assert 'name="name"' not in text and 'name="_save"' not in text  # nothing to edit
    assert admin_client.post(f"{CHANGELIST}{api_key.pk}/change/", {"name": "renamed"}).status_code == 403
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert ApiKey.objects.get(pk=api_key.pk).name == "ci"


def test_the_revoke_action(admin_client, user):
    first, first_key = api_key_create(user=user, name="first")
    second, _ = api_key_create(user=user, name="second")
    kept, kept_key = api_key_create(user=user, name="kept")
    ids = [str(first.pk), str(second.pk)]
    response = admin_client.post(CHANGELIST, {"action": "revoke", "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    assert "2 key(s) revoked; 0 skipped" in response.content.decode()
    assert set(ApiKey.objects.filter(revoked_at__isnull=False).values_list("name", flat=True)) == {"first", "second"}
    again = admin_client.post(CHANGELIST, {"action": "revoke", "_selected_action": ids}, follow=True)
    assert "0 key(s) revoked; 2 skipped" in again.content.decode()
    assert Client().get("/api/auth/me/", HTTP_AUTHORIZATION=f"Bearer {first_key}").status_code == 401
    assert Client().get("/api/auth/me/", HTTP_AUTHORIZATION=f"Bearer {kept_key}").status_code == 200


def test_a_user_who_is_not_staff_is_sent_to_the_admin_login(db):
    signed_in = Client()
    signed_in.force_login(UserFactory())
    assert signed_in.get(CHANGELIST)["Location"].startswith("/admin/login/")
