"""Signed download links through HTTP: `POST /api/conversions/{id}/link/` and `.../links/revoke/`, and
`GET /links/<token>/`, which serves the MP3 with no sign-in or answers a page saying why it does not."""

import logging
from datetime import datetime, timedelta
from html.parser import HTMLParser

import pytest
from django.core.files.storage import default_storage
from django.db.models import F
from django.test import Client
from django.utils import timezone

from conversions.models import Conversion
from conversions.services import conversions_expire, links
from mp3converter.errors import ConversionExpired
from tests.conversions.api.helpers import job_url, mp3_bytes
from tests.factories import ConversionFactory, DoneConversionFactory

Status = Conversion.Status


@pytest.fixture
def done(user, media):
    """The user's done job, with a real MP3 in storage."""
    job = DoneConversionFactory(owner=user, original_filename="Holiday clip.mp4", mp3_data=media("mp3").read_bytes())
    yield job
    default_storage.delete(job.mp3.name)


def make_link(api_client, job) -> dict:
    response = api_client.post(job_url(job.id, "link"))
    assert response.status_code == 201, response.content
    return response.json()


def path_of(link: dict) -> str:
    assert link["url"].startswith("http://testserver/links/"), link["url"]
    return link["url"].removeprefix("http://testserver")


def token_of(link: dict) -> str:
    return path_of(link).removeprefix("/links/").removesuffix("/")


def open_link(link: dict, **headers):
    """The link as a browser opens it: no session, no token."""
    return Client().get(path_of(link), **headers)


VOID = {"meta"}  # the page's elements that have no end tag


class Page(HTMLParser):
    """What the refusal page is made of; every element it opens must be closed in order."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: dict[str, str] = {}
        self._open: list[str] = []
        self.feed(html)
        self.close()
        assert self._open == [], self._open

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self._open.append(tag)

    def handle_endtag(self, tag):
        assert self._open and self._open[-1] == tag, (tag, self._open)
        self._open.pop()

    def handle_data(self, data):
        for tag in self._open:
            self.text[tag] = self.text.get(tag, "") + data


def refusal(response, status: int, code: str, heading: str) -> Page:
    """A refused link's answer: the status, and a small valid HTML page that names the case in words."""
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert html.startswith("<!doctype html>")
    page = Page(html)
    tags = [tag for tag, _ in page.tags]
    assert tags[0] == "html" and page.tags[0][1] == {"lang": "en"}
    for tag in ("head", "title", "body", "main", "h1", "p"):
        assert tag in tags, tag
    assert page.text["title"] == page.text["h1"] == heading
    assert not {"script", "style"} & set(tags)
    assert all("style" not in attrs and not any(name.startswith("on") for name in attrs) for _, attrs in page.tags)
    error = next(cls for cls in (links.LinkInvalid, links.LinkExpired, links.LinkRevoked, links.LinkReplaced,
                                 links.LinkDeleted, ConversionExpired) if cls.code == code)
    assert error.message in " ".join(page.text["main"].split())
    return page


# --- a working link ----------------------------------------------------------------------------------------------
def test_a_link_serves_the_same_mp3_as_the_owners_download_with_no_credentials(api_client, done):
    link = make_link(api_client, done)
    expires_at = datetime.fromisoformat(link["expires_at"])
    assert timedelta(days=7) - timedelta(minutes=1) < expires_at - timezone.now() <= timedelta(days=7)

    owners = api_client.get(job_url(done.id, "download"))
    response = open_link(link)
    assert response.status_code == 200
    assert mp3_bytes(response) == mp3_bytes(owners) == default_storage.open(done.mp3.name).read()
    for header in ("Content-Type", "Content-Length", "Content-Disposition", "ETag", "Accept-Ranges"):
        assert response[header] == owners[header], header
    assert response["Content-Disposition"] == 'attachment; filename="Holiday clip.mp3"'
    assert "private" in response["Cache-Control"] and "no-store" in response["Cache-Control"]

    # A stranger's token alongside changes nothing: the link alone decides.
    with_bearer = open_link(link, HTTP_AUTHORIZATION="Bearer not-a-token")
    assert with_bearer.status_code == 200
    assert mp3_bytes(with_bearer) == mp3_bytes(api_client.get(job_url(done.id, "download")))


def test_a_link_serves_ranges_etags_and_head_like_the_download(api_client, done):
    link = make_link(api_client, done)
    data = default_storage.open(done.mp3.name).read()
    partial = open_link(link, HTTP_RANGE="bytes=100-1099")
    assert partial.status_code == 206
    assert partial["Content-Range"] == f"bytes 100-1099/{len(data)}"
    assert mp3_bytes(partial) == data[100:1100]
    assert "private" in partial["Cache-Control"]

    tail = open_link(link, HTTP_RANGE="bytes=-10")
    assert (tail.status_code, mp3_bytes(tail)) == (206, data[-10:])
    assert open_link(link, HTTP_RANGE=f"bytes={len(data)}-").status_code == 416
    etag = open_link(link)["ETag"]
    assert open_link(link, HTTP_IF_NONE_MATCH=etag).status_code == 304

    head = Client().head(path_of(link))
    assert (head.status_code, head.content, head["Content-Length"]) == (200, b"", str(len(data)))
    assert Client().post(path_of(link)).status_code == 405


def test_making_a_link_needs_a_done_job_of_ones_own(api_client, other_client, user):
    queued = ConversionFactory(owner=user, status=Status.QUEUED)
    response = api_client.post(job_url(queued.id, "link"))
    assert response.status_code == 409
    assert response.json() == {
        "code": "invalid_state", "detail": "Only a done conversion has an MP3 to share; this one is queued."
    }
    assert other_client.post(job_url(queued.id, "link")).status_code == 404
    assert api_client.post(job_url("not-a-uuid", "link")).status_code == 404


# --- how a link stops working ------------------------------------------------------------------------------------
def test_revoking_through_the_api_kills_earlier_links_and_new_ones_work(api_client, other_client, done):
    earlier = [make_link(api_client, done), make_link(api_client, done)]
    assert other_client.post(job_url(done.id, "links/revoke")).status_code == 404
    assert open_link(earlier[0]).status_code == 200  # another user's revoke changed nothing

    response = api_client.post(job_url(done.id, "links/revoke"))
    assert (response.status_code, response.content) == (204, b"")
    for link in earlier:
        refusal(open_link(link), 410, "link_revoked", "This download link was withdrawn")
    fresh = make_link(api_client, done)
    assert open_link(fresh).status_code == 200


def test_a_retry_kills_the_earlier_attempts_links(api_client, done):
    link = make_link(api_client, done)
    # Done jobs cannot be retried; one that failed afterwards can, which makes a new attempt (and a new MP3).
    Conversion.objects.filter(pk=done.pk).update(status=Status.FAILED)
    assert api_client.post(job_url(done.id, "retry")).status_code == 202  # queued on commit: never, under `db`
    refusal(open_link(link), 410, "link_replaced", "This download link is out of date")
    Conversion.objects.filter(pk=done.pk).update(status=Status.DONE)
    page = refusal(open_link(link), 410, "link_replaced", "This download link is out of date")
    assert "sign in" in page.text["main"]


def test_a_new_attempt_of_a_done_job_kills_its_links(api_client, done):
    link = make_link(api_client, done)
    Conversion.objects.filter(pk=done.pk).update(attempt=F("attempt") + 1)
    refusal(open_link(link), 410, "link_replaced", "This download link is out of date")


def test_deleting_the_job_kills_its_links(api_client, done):
    link = make_link(api_client, done)
    assert api_client.delete(job_url(done.id)).status_code == 204
    page = refusal(open_link(link), 410, "link_deleted", "This conversion was deleted")
    assert "sign in" not in page.text["main"]  # nothing is left to sign in for


def test_an_expired_jobs_links_die_with_it(api_client, done):
    link = make_link(api_client, done)
    conversions_expire(now=timezone.now() + timedelta(days=31))
    page = refusal(open_link(link), 410, "conversion_expired", "This conversion has expired")
    assert "sign in" not in page.text["main"]  # nothing is left to sign in for
    again = api_client.post(job_url(done.id, "link"))
    assert again.status_code == 410
    assert again.json() == {"code": "conversion_expired", "detail": ConversionExpired.message}


def test_an_expired_link_is_refused(api_client, done, monkeypatch):
    # Made eight days ago by the service's own clock.
    monkeypatch.setattr(links, "now", lambda: timezone.now() - timedelta(days=8))
    link = make_link(api_client, done)
    monkeypatch.undo()
    refusal(open_link(link), 410, "link_expired", "This download link has expired")


@pytest.mark.parametrize("token", ["not-a-link", "a" * 2000, "eyJjIjoiIn0:1tX:abc", "%00", "%3Cscript%3E"])
def test_a_damaged_or_forged_link_is_refused(db, token):
    response = Client().get(f"/links/{token}/")
    refusal(response, 403, "link_invalid", "This download link is not valid")
    assert token not in response.content.decode()  # the page never repeats what it was given


def test_a_tampered_link_is_refused(api_client, done):
    link = make_link(api_client, done)
    token = token_of(link)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    refusal(Client().get(f"/links/{tampered}/"), 403, "link_invalid", "This download link is not valid")


def test_a_stored_file_gone_missing_is_told_in_words(api_client, done):
    # A done job whose MP3 the row no longer names: the owner's download says 409; the link says so on a page.
    link = make_link(api_client, done)
    Conversion.objects.filter(pk=done.pk).update(mp3="")
    response = open_link(link)
    assert response.status_code == 409
    assert "The MP3 is not ready" in response.content.decode()
    assert "<h1>This download is not available right now</h1>" in response.content.decode()


# --- the token stays out of the logs -----------------------------------------------------------------------------
def test_the_token_is_logged_only_where_django_logs_the_request(api_client, done, caplog):
    revoked = make_link(api_client, done)
    api_client.post(job_url(done.id, "links/revoke"))
    good = make_link(api_client, done)
    with caplog.at_level(logging.DEBUG):
        assert open_link(good).status_code == 200
        assert open_link(revoked).status_code == 410
        assert Client().get("/links/forged:token/").status_code == 403
    tokens = (token_of(good), token_of(revoked), "forged:token")
    leaks = [(record.name, record.getMessage()) for record in caplog.records
             if record.name != "django.request" and any(token in record.getMessage() for token in tokens)]
    assert leaks == []
    assert any(f"conversion {done.pk}: served through a download link" in record.getMessage()
               for record in caplog.records)
