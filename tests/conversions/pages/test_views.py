"""The conversion pages through Django's test client with CSRF checks on: the forms a browser without JavaScript
sends, and what each page shows. The browser tests (tests/browser) drive the same pages with the script."""

import re
import zipfile
from io import BytesIO

import pytest
from django.test import Client

from conversions.models import Conversion
from conversions.services.lifecycle import RETRY_EXPIRED
from tests.conversions.api.helpers import convert_all, mp3_bytes, upload
from tests.factories import ConversionFactory, UserFactory
from tests.fixtures.users import bearer_client

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_token(client: Client, path: str = "/") -> str:
    page = client.get(path)
    return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()


def post(client: Client, path: str, data: dict | None = None, page: str = "/conversions/"):
    return client.post(path, {**(data or {}), "csrfmiddlewaretoken": csrf_token(client, page)})


# --- home and convert ------------------------------------------------------------------------------------------------
def test_a_stranger_gets_a_welcome_page_that_leads_to_sign_up():
    page = Client().get("/")
    assert page.status_code == 200
    assert b'href="/account/signup/"' in page.content and b'href="/account/login/"' in page.content
    assert b'href="/api/docs/"' in page.content  # the API docs stay linked from the footer


def test_the_convert_form_offers_the_presets_and_every_api_option():
    page = signed_in(UserFactory()).get("/")
    assert page.status_code == 200
    text = page.content.decode()
    assert re.search(r'<input type="file" name="files"[^>]* multiple', text)
    for label in ("Standard: VBR 2", "Best: 320 kbps", "Small: VBR 6 mono", "Voice: 64 kbps mono + loudness normalisation"):
        assert label in text
    for option in ("bitrate_kbps", "vbr_quality", "sample_rate", "channels", "trim_start", "trim_end", "normalize",
                   "title", "artist", "album", "cover", "audio_track", "split"):
        assert f'name="{option}"' in text, option
    assert re.search(r'<label for="id_files"', text)


def test_the_form_without_script_converts_each_file_with_the_preset_and_the_advanced_options(media):
    user = UserFactory()
    client = signed_in(user)
    token = csrf_token(client)
    with open(media("mp4_aac"), "rb") as first, open(media("wav"), "rb") as second:
        response = client.post("/", {"files": [first, second], "preset": "voice", "artist": "Someone",
                                     "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/conversions/"
    jobs = Conversion.objects.filter(owner=user).order_by("original_filename")
    assert [job.original_filename for job in jobs] == ["clip.mp4", "tone.wav"]
    for job in jobs:
        assert job.options["bitrate_kbps"] == 64 and job.options["channels"] == 1 and job.options["normalize"] is True
        assert job.options["artist"] == "Someone"


def test_the_form_without_script_splits_at_chapters_and_the_page_lists_the_tracks(chaptered_media):
    user = UserFactory()
    client = signed_in(user)
    with open(chaptered_media, "rb") as source:
        response = client.post("/", {"files": [source], "preset": "standard", "split": "chapters",
                                     "csrfmiddlewaretoken": csrf_token(client)})
    assert response.status_code == 302
    job = Conversion.objects.get(owner=user)
    assert job.options["split"] == "chapters"
    # As the worker leaves it (the rows only: the page reads no file).
    Conversion.objects.filter(pk=job.pk).update(status="done", finished_at=job.created_at)
    for number, title in enumerate(["Intro", "Outro"], start=1):
        job.tracks.create(number=number, title=title, start_seconds=number, duration_seconds=2, mp3="x", size=1)
    page = client.get(f"/conversions/{job.id}/").content.decode()
    for number, title in enumerate(["Intro", "Outro"], start=1):
        assert title in page
        assert f'src="/api/conversions/{job.id}/tracks/{number}/download/"' in page
    assert f'href="/api/conversions/{job.id}/download/" download>' in page  # the ZIP
    job.source.delete(save=False)


def test_an_advanced_bitrate_replaces_the_presets_vbr(media):
    user = UserFactory()
    client = signed_in(user)
    with open(media("wav"), "rb") as source:
        client.post("/", {"files": [source], "preset": "small", "bitrate_kbps": "128", "csrfmiddlewaretoken": csrf_token(client)})
    job = Conversion.objects.get(owner=user)
    assert job.options["bitrate_kbps"] == 128 and "vbr_quality" not in job.options and job.options["channels"] == 1


def test_a_refused_file_gets_its_sentence_next_to_its_name_and_the_good_one_is_converted(media):
    user = UserFactory()
    client = signed_in(user)
    with open(media("text"), "rb") as text, open(media("mp4_noaudio"), "rb") as silent, open(media("wav"), "rb") as good:
        response = client.post("/", {"files": [text, silent, good], "preset": "standard", "csrfmiddlewaretoken": csrf_token(client)})
    assert response.status_code == 200
    page = response.content.decode()
    rows = re.findall(r'<li class="upload( failed)?">\s*<span class="name">([^<]+)</span>\s*(.*?)</li>', page, re.S)
    by_name = {name: (failed, body) for failed, name, body in rows}
    assert by_name["notes.txt"][0] and "not a video or audio file" in by_name["notes.txt"][1].lower()
    assert by_name["silent.mp4"][0] and "no audio" in by_name["silent.mp4"][1].lower()
    assert not by_name["tone.wav"][0]
    assert list(Conversion.objects.filter(owner=user).values_list("original_filename", flat=True)) == ["tone.wav"]


def test_only_refused_files_answer_with_the_errors_status(media):
    client = signed_in(UserFactory())
    with open(media("text"), "rb") as text:
        response = client.post("/", {"files": [text], "preset": "standard", "csrfmiddlewaretoken": csrf_token(client)})
    assert response.status_code == 415


def test_a_file_past_the_size_limit_is_a_sentence_not_an_error_page(settings, media):
    settings.MAX_UPLOAD_MB = 1
    big = media("wav").parent / "big-page.wav"
    big.write_bytes(b"\0" * (3 * 1024 * 1024))
    client = signed_in(UserFactory())
    with open(big, "rb") as source:
        response = client.post("/", {"files": [source], "preset": "standard", "csrfmiddlewaretoken": csrf_token(client)})
    assert response.status_code == 413
    assert b"larger than the 1 MB limit" in response.content


def test_an_unconfirmed_account_is_told_to_confirm_before_uploading(media):
    user = UserFactory(email_verified=False)
    client = signed_in(user)
    assert b"Confirm your email address first" in client.get("/").content
    with open(media("wav"), "rb") as source:
        response = client.post("/", {"files": [source], "preset": "standard", "csrfmiddlewaretoken": csrf_token(client)})
    assert response.status_code == 403 and b"Confirm your email address first" in response.content
    assert not Conversion.objects.filter(owner=user).exists()


def test_the_convert_form_needs_its_csrf_token(media):
    user = UserFactory()
    client = signed_in(user)
    with open(media("wav"), "rb") as source:
        response = client.post("/", {"files": [source], "preset": "standard"})
    assert response.status_code == 403
    assert not Conversion.objects.filter(owner=user).exists()


def test_a_form_with_no_file_asks_for_one():
    client = signed_in(UserFactory())
    response = client.post("/", {"preset": "standard", "csrfmiddlewaretoken": csrf_token(client)})
    assert response.status_code == 400 and b"Pick at least one file" in response.content


def test_the_convert_form_takes_a_link_without_script():
    user = UserFactory()
    client = signed_in(user)
    page = client.get("/").content.decode()
    assert re.search(r'<label for="id_source_url">Or a link to a video</label>\s*<input type="url" name="source_url"', page)
    response = client.post("/", {"source_url": "https://media.example/show/episode-1.mp4", "preset": "best",
                                 "csrfmiddlewaretoken": csrf_token(client)})
    assert response.status_code == 302 and response["Location"] == "/conversions/"
    job = Conversion.objects.get(owner=user)
    assert (job.source_url, job.original_filename, job.status) == (
        "https://media.example/show/episode-1.mp4", "episode-1.mp4", "queued"
    )
    assert job.options["bitrate_kbps"] == 320


def test_a_bad_link_gets_its_sentence():
    user = UserFactory()
    client = signed_in(user)
    response = client.post("/", {"source_url": "ftp://media.example/a.mp4", "preset": "standard",
                                 "csrfmiddlewaretoken": csrf_token(client)})
    assert response.status_code == 400
    assert "Only http and https URLs can be imported." in response.content.decode()
    assert not Conversion.objects.filter(owner=user).exists()


def test_the_convert_form_takes_a_webhook_url_without_script(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    user = UserFactory()
    client = signed_in(user)
    assert 'name="webhook_url"' in client.get("/").content.decode()
    response = client.post("/", {"source_url": "https://media.example/a.mp4", "preset": "standard",
                                 "webhook_url": "http://127.0.0.1:9/page", "csrfmiddlewaretoken": csrf_token(client)})
    assert response.status_code == 302
    assert Conversion.objects.get(owner=user).webhook_url == "http://127.0.0.1:9/page"


def test_a_fetching_job_shows_its_progress_in_the_list():
    user = UserFactory()
    ConversionFactory(owner=user, status="fetching", progress=40, source_url="https://media.example/a.mp4")
    page = signed_in(user).get("/conversions/").content.decode()
    assert '<span class="status status-fetching" data-field="status">Fetching</span>' in page
    assert re.search(r'<progress max="100" value="40" data-field="progress"[^>]*>', page)
    assert not re.search(r'<progress max="100" value="40" data-field="progress"[^>]* hidden', page)


# --- your conversions --------------------------------------------------------------------------------------------------
def test_the_list_is_empty_with_a_way_forward():
    page = signed_in(UserFactory()).get("/conversions/")
    assert page.status_code == 200
    assert b"You have no conversions yet" in page.content and b'href="/"' in page.content


def test_the_list_shows_only_the_owners_jobs_paginated():
    user = UserFactory()
    ConversionFactory.create_batch(23, owner=user)
    ConversionFactory(owner=UserFactory(), original_filename="someone-elses.mp4")
    client = signed_in(user)
    first = client.get("/conversions/").content.decode()
    second = client.get("/conversions/?page=2").content.decode()
    assert first.count('name="ids"') == 20 and second.count('name="ids"') == 3
    assert "Page 1 of 2" in first and 'href="?page=2"' in first
    assert "someone-elses.mp4" not in first + second


def test_a_running_job_in_the_list_carries_what_the_script_polls():
    user = UserFactory()
    job = ConversionFactory(owner=user, status="processing", progress=40)
    page = signed_in(user).get("/conversions/").content.decode()
    assert f'data-job-url="/api/conversions/{job.id}/" data-status="processing"' in page
    assert re.search(r'<progress max="100" value="40" data-field="progress"', page)


def test_another_users_conversion_page_and_actions_answer_404():
    job = ConversionFactory(owner=UserFactory(), status="failed")
    client = signed_in(UserFactory())
    assert client.get(f"/conversions/{job.id}/").status_code == 404
    for action in ("cancel", "retry", "delete", "share", "revoke-links"):
        assert post(client, f"/conversions/{job.id}/{action}/").status_code == 404, action
    assert Conversion.objects.filter(pk=job.pk, status="failed").exists()


def test_a_failed_job_shows_why_in_words_with_a_retry_button():
    user = UserFactory()
    job = ConversionFactory(owner=user, status="failed", error_code="corrupt_media",
                            error_message="The file is damaged: its audio could not be decoded.")
    page = signed_in(user).get(f"/conversions/{job.id}/").content.decode()
    assert "The file is damaged: its audio could not be decoded." in page
    assert re.search(rf'action="/conversions/{job.id}/retry/"[^>]*data-when="failed cancelled">', page)


def test_an_expired_job_says_so_with_nothing_to_play_download_share_or_retry():
    user = UserFactory()
    job = ConversionFactory(owner=user, status="expired", error_code="corrupt_media",
                            error_message="The file is damaged: its audio could not be decoded.")
    client = signed_in(user)
    page = client.get(f"/conversions/{job.id}/").content.decode()
    assert f'<span class="status status-expired" data-field="status">Expired</span>' in page
    assert "Its files were removed after the time this service keeps them" in page
    assert "<audio" not in page and "Make a share link" not in page
    assert re.search(r'data-field="error" hidden>', page)
    # The controls the script shows for other states are there, hidden.
    assert re.search(rf'href="/api/conversions/{job.id}/download/" data-when="done" download hidden>', page)
    assert re.search(rf'action="/conversions/{job.id}/retry/"[^>]*data-when="failed cancelled" hidden>', page)
    listed = client.get("/conversions/").content.decode()
    assert 'class="status status-expired"' in listed and '"expired": "Expired"' in listed

    retried = post(client, f"/conversions/{job.id}/retry/")
    assert [str(message) for message in retried.wsgi_request._messages] == [RETRY_EXPIRED]
    assert Conversion.objects.get(pk=job.pk).status == "expired"


def test_cancel_retry_and_delete_from_the_page():
    user = UserFactory()
    job = ConversionFactory(owner=user, status="queued")
    client = signed_in(user)
    assert post(client, f"/conversions/{job.id}/cancel/").status_code == 302
    assert Conversion.objects.get(pk=job.pk).status == "cancelled"
    again = post(client, f"/conversions/{job.id}/cancel/")
    assert "Only queued or running conversions can be cancelled." in [str(m) for m in again.wsgi_request._messages]
    assert post(client, f"/conversions/{job.id}/retry/").status_code == 302
    assert Conversion.objects.get(pk=job.pk).status == "queued"
    assert post(client, f"/conversions/{job.id}/delete/")["Location"] == "/conversions/"
    assert not Conversion.objects.filter(pk=job.pk).exists()


def test_actions_take_only_post():
    user = UserFactory()
    job = ConversionFactory(owner=user, status="queued")
    assert signed_in(user).get(f"/conversions/{job.id}/cancel/").status_code == 405


def test_a_next_that_leaves_the_site_is_ignored():
    user = UserFactory()
    job = ConversionFactory(owner=user, status="queued")
    client = signed_in(user)
    response = post(client, f"/conversions/{job.id}/cancel/", {"next": "//evil.example.com/"})
    assert response["Location"] == f"/conversions/{job.id}/"


# --- with real conversions -------------------------------------------------------------------------------------------
@pytest.fixture
def two_done(live_workers, media):
    user = UserFactory()
    api = bearer_client(user)
    return user, api, convert_all(api, [media("mp4_aac"), media("wav")])


def test_a_done_job_has_a_player_on_the_ranged_download_and_a_share_link(two_done):
    user, api, [job_id, _] = two_done
    client = signed_in(user)
    page = client.get(f"/conversions/{job_id}/").content.decode()
    assert f'<audio controls preload="metadata" src="/api/conversions/{job_id}/download/">' in page
    ranged = client.get(f"/api/conversions/{job_id}/download/", HTTP_RANGE="bytes=0-99")
    assert ranged.status_code == 206 and len(mp3_bytes(ranged)) == 100

    shared = post(client, f"/conversions/{job_id}/share/", page=f"/conversions/{job_id}/")
    assert shared.status_code == 200
    url = re.search(r'id="shared-link" readonly value="([^"]+)"', shared.content.decode()).group(1)
    path = url.split("://", 1)[1].split("/", 1)[1]
    assert Client().get("/" + path).status_code == 200
    post(client, f"/conversions/{job_id}/revoke-links/", page=f"/conversions/{job_id}/")
    assert Client().get("/" + path).status_code == 410


def test_selected_conversions_download_as_one_zip(two_done):
    user, api, ids = two_done
    client = signed_in(user)
    response = client.post("/conversions/zip/", {"ids": ids, "csrfmiddlewaretoken": csrf_token(client, "/conversions/")})
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == ["clip.mp3", "tone.mp3"]
    for job_id in ids:
        name = Conversion.objects.get(pk=job_id).mp3_filename
        assert archive.read(name) == mp3_bytes(api.get(f"/api/conversions/{job_id}/download/"))


def test_a_zip_of_nothing_or_of_someone_elses_says_so():
    user = UserFactory()
    client = signed_in(user)
    nothing = client.post("/conversions/zip/", {"csrfmiddlewaretoken": csrf_token(client, "/conversions/")})
    assert nothing.status_code == 302
    theirs = ConversionFactory(owner=UserFactory(), status="done")
    refused = client.post("/conversions/zip/", {"ids": [str(theirs.id)], "csrfmiddlewaretoken": csrf_token(client, "/conversions/")})
    assert refused.status_code == 302 and refused["Location"] == "/conversions/"


# --- headers ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/account/login/", "/account/signup/"])
def test_pages_carry_a_strict_content_security_policy_and_deny_framing(path):
    response = Client().get(path)
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    assert not re.search(rb"<script(?![^>]*\bsrc=)(?![^>]*application/json)", response.content)  # no inline script
    assert b" style=" not in response.content


# Words a page may show untranslated: the product's name, and the time zone after a date.
UNTRANSLATED = {"mp3converter", "UTC"}


def untranslated_text(template: str) -> set[str]:
    """Words a person would read that no {% translate %} or {% blocktranslate %} wraps."""
    text = re.sub(r"{% blocktranslate.*?{% endblocktranslate %}", " ", template, flags=re.S)
    text = re.sub(r"{% comment %}.*?{% endcomment %}", " ", text, flags=re.S)
    text = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", " ", text, flags=re.S)
    text = re.sub(r"<(script|style)\b.*?</\1>|<!--.*?-->|<[^>]*>", " ", text, flags=re.S)
    return {word for word in re.findall(r"[A-Za-z][\w']+", text)} - UNTRANSLATED


def test_templates_are_ready_for_translation():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    pages = [*root.glob("*/templates/**/*.html"), *root.glob("mp3converter/templates/**/*.html")]
    assert len(pages) > 20
    for template in pages:
        if "rest_framework" in template.parts:  # DRF's own pages, with one block overridden
            continue
        text = template.read_text()
        assert untranslated_text(text) == set(), template
        if "{% translate" in text or "{% blocktranslate" in text:
            assert re.search(r"{% load [^%]*\bi18n\b", text), f"{template} does not load i18n"
