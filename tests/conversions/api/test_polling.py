"""GET /api/conversions/{id}/ with If-None-Match: an ETag from what the answer shows, 304 while it stays the same."""

import pytest
from django.test import RequestFactory

from conversions.api.conditional import not_modified, representation_etag
from conversions.models import Conversion
from tests.conversions.api.helpers import job_url, upload, wait_finished
from tests.factories import ConversionFactory
from tests.utils import wait_for


@pytest.mark.django_db
def test_a_job_answers_an_etag_and_304_while_nothing_changes(api_client, user):
    job = ConversionFactory(owner=user)
    first = api_client.get(job_url(job.id))
    assert first.status_code == 200
    etag = first["ETag"]
    assert etag.startswith('W/"') and etag.endswith('"')
    assert first["Cache-Control"] == "private, no-cache"

    again = api_client.get(job_url(job.id), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag and again["Cache-Control"] == "private, no-cache"
    # Weak comparison: the same tag sent strong, among others, or `*` all match.
    assert api_client.get(job_url(job.id), HTTP_IF_NONE_MATCH=etag[2:]).status_code == 304
    assert api_client.get(job_url(job.id), HTTP_IF_NONE_MATCH=f'"other", {etag}').status_code == 304
    assert api_client.get(job_url(job.id), HTTP_IF_NONE_MATCH="*").status_code == 304
    assert api_client.get(job_url(job.id), HTTP_IF_NONE_MATCH='W/"other"').status_code == 200

    Conversion.objects.filter(pk=job.pk).update(status="processing", progress=10)
    moved = api_client.get(job_url(job.id), HTTP_IF_NONE_MATCH=etag)
    assert moved.status_code == 200 and moved.json()["progress"] == 10
    assert moved["ETag"] != etag

    Conversion.objects.filter(pk=job.pk).update(progress=11)
    progressed = api_client.get(job_url(job.id), HTTP_IF_NONE_MATCH=moved["ETag"])
    assert progressed.status_code == 200 and progressed["ETag"] not in (etag, moved["ETag"])


@pytest.mark.django_db
def test_another_users_tag_reveals_nothing(api_client, other_client, user):
    job = ConversionFactory(owner=user)
    etag = api_client.get(job_url(job.id))["ETag"]
    response = other_client.get(job_url(job.id), HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 404 and not response.has_header("ETag")


@pytest.mark.django_db
def test_the_browsable_page_is_not_kept(api_client, user):
    # It carries forms with a CSRF token: no validator, and the default no-store.
    job = ConversionFactory(owner=user)
    page = api_client.get(job_url(job.id), HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert not page.has_header("ETag") and page["Cache-Control"] == "no-store"


def test_the_etag_follows_every_value():
    data = {"id": "x", "status": "queued", "progress": 0, "options": {"title": "a"}, "notified_at": None}
    etag = representation_etag(data)
    assert representation_etag(dict(reversed(list(data.items())))) == etag  # key order does not matter
    for key, value in (("status", "processing"), ("progress", 1), ("options", {"title": "b"}), ("notified_at", "t")):
        assert representation_etag({**data, key: value}) != etag, key


def test_if_none_match_parsing():
    rf = RequestFactory()
    etag = 'W/"abc"'
    assert not not_modified(rf.get("/"), etag)
    assert not_modified(rf.get("/", HTTP_IF_NONE_MATCH='"abc"'), etag)
    assert not_modified(rf.get("/", HTTP_IF_NONE_MATCH='"x" , W/"abc"'), etag)
    assert not not_modified(rf.get("/", HTTP_IF_NONE_MATCH="abc"), etag)  # unquoted: not an entity-tag
    assert not not_modified(rf.get("/", HTTP_IF_NONE_MATCH='"abcd"'), etag)


@pytest.mark.e2e
def test_polling_a_real_conversion_sees_each_change(live_workers, api_client, media):
    response = upload(api_client, media("mp4_aac", duration=3.0))
    assert response.status_code == 202, response.content
    url = job_url(response.json()["id"])
    seen = {}  # ETag -> the status it came with

    def poll():
        etag = next(reversed(seen), None)
        answer = api_client.get(url, **({"HTTP_IF_NONE_MATCH": etag} if etag else {}))
        if answer.status_code == 304:
            assert answer["ETag"] == etag
            return None
        assert answer.status_code == 200
        body = answer.json()
        assert answer["ETag"] not in seen  # a new answer, a new tag
        seen[answer["ETag"]] = body["status"]
        return body["status"] == "done" and body["notified_at"]

    wait_for(poll, timeout=90, message="the conversion to finish and its owner to be told")
    statuses = list(seen.values())
    assert statuses[0] in ("queued", "processing") and statuses[-1] == "done"
    assert len(seen) >= 2
    final = next(reversed(seen))
    assert api_client.get(url, HTTP_IF_NONE_MATCH=final).status_code == 304
    assert wait_finished(api_client, response.json()["id"])["status"] == "done"
