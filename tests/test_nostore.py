"""mp3converter.nostore: answers with private data are never cached; a view's own caching is kept."""

import io

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from tests.factories import PASSWORD, ConversionFactory

pytestmark = pytest.mark.django_db


def test_token_answers_and_the_signed_in_user_are_not_stored(client, user):
    tokens = client.post("/api/auth/token/", {"email": user.email, "password": PASSWORD})
    assert tokens.status_code == 200 and "access" in tokens.json()
    assert tokens["Cache-Control"] == "no-store"
    refreshed = client.post("/api/auth/token/refresh/", {"refresh": tokens.json()["refresh"]})
    assert refreshed.status_code == 200
    assert refreshed["Cache-Control"] == "no-store"
    me = client.get("/api/auth/me/", HTTP_AUTHORIZATION=f"Bearer {tokens.json()['access']}")
    assert me.status_code == 200 and me.json()["email"] == user.email
    assert me["Cache-Control"] == "no-store"


def test_every_api_answer_is_not_stored_errors_included(api_client, client, user):
    job = ConversionFactory(owner=user)
    for response in (
        api_client.get("/api/conversions/"),
        api_client.get(f"/api/conversions/{job.id}/", HTTP_ACCEPT="text/html"),  # the browsable API's page
        api_client.get("/api/conversions/not-a-job/"),  # 404
        api_client.get(f"/api/conversions/{job.id}/download/"),  # 409: not done yet
        api_client.post("/api/conversions/zip/", {"ids": [str(job.id)]}, format="json"),  # 409: not done yet
        client.get("/api/conversions/"),  # 401
        client.post("/login", HTTP_AUTHORIZATION="Basic bm9ib2R5Om5vdGhpbmc="),  # the classic login, refused
    ):
        assert response["Cache-Control"] == "no-store", (response.status_code, response.wsgi_request.path)


def test_a_jobs_json_answer_is_private_and_revalidated_for_polling(api_client, user):
    job = ConversionFactory(owner=user)
    response = api_client.get(f"/api/conversions/{job.id}/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-cache"
    assert response.has_header("ETag")


def test_a_download_is_private_and_not_stored_and_keeps_its_validators(api_client, user):
    job = ConversionFactory(owner=user, status="done", mp3_size=1000, finished_at=timezone.now())
    job.mp3.save("ignored", io.BytesIO(bytes(range(200)) * 5))
    try:
        url = f"/api/conversions/{job.id}/download/"
        full = api_client.get(url)
        assert full.status_code == 200 and full["Cache-Control"] == "private, no-store"
        assert b"".join(full.streaming_content) == bytes(range(200)) * 5
        part = api_client.get(url, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=full["ETag"])
        assert part.status_code == 206 and b"".join(part.streaming_content) == bytes(range(10))
        assert api_client.get(url, HTTP_IF_NONE_MATCH=full["ETag"]).status_code == 304
    finally:
        default_storage.delete(job.mp3.name)


def test_a_views_own_caching_is_kept(client):
    admin_login = client.get("/admin/login/")
    assert "private" in admin_login["Cache-Control"] and "no-store" in admin_login["Cache-Control"]
