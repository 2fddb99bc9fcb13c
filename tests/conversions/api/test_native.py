"""The native API end to end: real upload, real RabbitMQ, real worker processes, real ffmpeg, real SMTP."""

import re
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from conversions.models import Conversion
from conversions.services import conversions_expire
from conversions.services.lifecycle import RETRY_EXPIRED
from mp3converter.errors import ConversionExpired
from tests.factories import ConversionFactory, DoneConversionFactory
from tests.conversions.api.helpers import mp3_bytes, upload, wait_finished
from tests.media import probe_output
from tests.utils import stored_files, wait_for

pytestmark = [pytest.mark.e2e]


def test_upload_converts_downloads_and_emails(live_workers, api_client, user, media, mailbox, tmp_path):
    response = upload(api_client, media("mp4_aac", duration=3.0))
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["status"] == "queued"
    assert job["original_filename"] == "clip.mp4"
    assert job["options"] == {"title": "clip"}

    finished = wait_finished(api_client, job["id"])
    assert finished["status"] == "done", finished
    assert finished["error"] is None
    assert finished["duration_seconds"] == pytest.approx(3.0, abs=0.1)
    assert finished["download_url"].endswith(f"/api/conversions/{job['id']}/download/")

    download = api_client.get(f"/api/conversions/{job['id']}/download/")
    assert download.status_code == 200
    assert download["Content-Type"] == "audio/mpeg"
    assert download["Content-Disposition"] == 'attachment; filename="clip.mp3"'
    body = mp3_bytes(download)
    assert int(download["Content-Length"]) == len(body) == finished["mp3_size"]
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(body)
    probed = probe_output(mp3)
    assert [stream["codec"] for stream in probed["audio"]] == ["mp3"]
    assert probed["video"] == []
    assert probed["duration"] == pytest.approx(3.0, abs=0.1)

    messages = wait_for(lambda: mailbox.to(user.email), timeout=30, message="the notification email")
    assert len(messages) == 1
    assert messages[0]["Subject"] == "MP3 Download"
    text = messages[0].get_payload(decode=True).decode()
    assert text.startswith(f"mp3 file_id: {job['id']} is now ready!")
    assert f"/conversions/{job['id']}/" in text
    # The signed link in the email downloads the same MP3 with no credentials.
    link = re.search(r"http://testserver(/links/\S+/)", text)
    assert link, text
    assert mp3_bytes(Client().get(link.group(1))) == body
    wait_for(lambda: api_client.get(f"/api/conversions/{job['id']}/").json()["notified_at"], timeout=10,
             message="notified_at")


def test_cbr_option_is_applied(live_workers, api_client, media, tmp_path):
    response = upload(api_client, media("mkv_opus"), bitrate_kbps=128)
    assert response.status_code == 202, response.content
    assert response.json()["options"] == {"bitrate_kbps": 128, "title": "clip"}
    assert wait_finished(api_client, response.json()["id"])["status"] == "done"
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(mp3_bytes(api_client.get(f"/api/conversions/{response.json()['id']}/download/")))
    assert probe_output(mp3)["audio"][0]["bitrate_kbps"] == 128


def test_damaged_media_fails_with_code_and_email(live_workers, api_client, user, media, mailbox):
    response = upload(api_client, media("truncated_faststart_mp4", duration=6.0))
    assert response.status_code == 202, response.content
    finished = wait_finished(api_client, response.json()["id"])
    assert finished["status"] == "failed"
    assert finished["error"]["code"] == "corrupt_media"
    assert "damaged" in finished["error"]["message"]
    assert finished["download_url"] is None
    conversion = Conversion.objects.get(pk=finished["id"])
    assert conversion.error_detail  # ffmpeg's words, kept for operators
    assert "error_detail" not in finished
    download = api_client.get(f"/api/conversions/{finished['id']}/download/")
    assert download.status_code == 409
    messages = wait_for(lambda: mailbox.to(user.email), timeout=30, message="the failure email")
    assert messages[0]["Subject"] == "MP3 conversion failed"


@pytest.mark.parametrize(
    ("spec", "status", "code"),
    [
        ("mp4_noaudio", 422, "no_audio_stream"),
        ("text", 415, "unsupported_media"),
        ("truncated_mp4", 415, "unsupported_media"),
        ("random_bytes_mp4", 415, "unsupported_media"),
        ("png", 415, "unsupported_media"),
        ("text_large", 415, "unsupported_media"),
    ],
)
def test_bad_input_is_refused_at_upload_and_nothing_is_kept(live_workers, api_client, media, spec, status, code):
    before = stored_files()
    response = upload(api_client, media(spec))
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert len(response.json()["detail"]) > 20  # a sentence, not a bare code
    assert Conversion.objects.count() == 0
    assert stored_files() == before


def test_empty_file_is_refused(live_workers, api_client, media):
    response = upload(api_client, media("empty_mp4"))
    assert response.status_code == 400
    assert response.json() == {"file": ["The submitted file is empty."]}
    assert Conversion.objects.count() == 0


def test_upload_over_the_limit_is_refused_with_413(live_workers, api_client, media, settings):
    settings.MAX_UPLOAD_MB = 1
    big = media("mp4_aac", duration=2.0).parent / "big.mp4"
    big.write_bytes(b"\0" * (3 * 1024 * 1024))
    response = upload(api_client, big)
    assert response.status_code == 413
    assert response.json()["code"] == "file_too_large"
    assert "1 MB" in response.json()["detail"]
    assert Conversion.objects.count() == 0


def test_missing_file_and_bad_options_name_the_field(live_workers, api_client, media):
    response = api_client.post("/api/conversions/", {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()
    response = upload(api_client, media("mp4_aac"), bitrate_kbps=100)
    assert response.status_code == 400
    assert "bitrate_kbps" in response.json()
    response = upload(api_client, media("mp4_aac"), bitrate_kbps=128, vbr_quality=3)
    assert response.status_code == 400
    assert "vbr_quality" in response.json()


def test_list_detail_range_and_delete(live_workers, api_client, media):
    first = upload(api_client, media("mp4_aac")).json()
    second = upload(api_client, media("webm_vorbis")).json()
    listing = api_client.get("/api/conversions/").json()
    assert listing["count"] == 2
    assert [item["id"] for item in listing["results"]] == [second["id"], first["id"]]  # newest first

    done = wait_finished(api_client, first["id"])
    url = f"/api/conversions/{first['id']}/download/"
    full = mp3_bytes(api_client.get(url))
    partial = api_client.get(url, HTTP_RANGE="bytes=100-199")
    assert partial.status_code == 206
    assert partial["Content-Range"] == f"bytes 100-199/{done['mp3_size']}"
    assert mp3_bytes(partial) == full[100:200]
    assert api_client.get(url, HTTP_RANGE=f"bytes={len(full)}-").status_code == 416
    etag = api_client.get(url)["ETag"]
    assert api_client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304

    conversion = Conversion.objects.get(pk=first["id"])
    stored = [conversion.source.name, conversion.mp3.name]
    assert all(default_storage.exists(name) for name in stored)
    assert api_client.delete(f"/api/conversions/{first['id']}/").status_code == 204
    assert api_client.get(f"/api/conversions/{first['id']}/").status_code == 404
    assert not any(default_storage.exists(name) for name in stored)
    wait_finished(api_client, second["id"])


def test_another_users_job_is_404_everywhere(live_workers, api_client, other_client, media):
    job = upload(api_client, media("mp4_aac")).json()
    wait_finished(api_client, job["id"])
    assert other_client.get("/api/conversions/").json()["count"] == 0
    for method, url in [
        ("get", f"/api/conversions/{job['id']}/"),
        ("get", f"/api/conversions/{job['id']}/download/"),
        ("delete", f"/api/conversions/{job['id']}/"),
        ("get", f"/download?fid={job['id']}"),
    ]:
        response = getattr(other_client, method)(url)
        assert response.status_code == 404, (method, url, response.status_code)
    assert api_client.get(f"/api/conversions/{job['id']}/").status_code == 200


def test_unicode_filename_download_header(live_workers, api_client, media):
    source = media("mp4_aac").parent / "Ünïcødé 日本.mp4"
    source.write_bytes(media("mp4_aac").read_bytes())
    job = upload(api_client, source).json()
    assert job["original_filename"] == "Ünïcødé 日本.mp4"
    wait_finished(api_client, job["id"])
    disposition = api_client.get(f"/api/conversions/{job['id']}/download/")["Content-Disposition"]
    assert disposition.startswith("attachment; filename*=utf-8''")
    assert "%E6%97%A5%E6%9C%AC.mp3" in disposition


# --- import from a URL (the fetch itself: tests/conversions/services/test_fetching.py) --------------------------
@pytest.mark.django_db
def test_a_source_url_queues_a_job_that_shows_it(api_client, user):
    response = api_client.post(
        "/api/conversions/", {"source_url": "https://media.example/talks/Big%20Talk.mkv?dl=1", "channels": "1"},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    job = response.json()
    assert (job["status"], job["source_url"], job["original_filename"]) == (
        "queued", "https://media.example/talks/Big%20Talk.mkv?dl=1", "Big Talk.mkv"
    )
    assert job["options"] == {"channels": 1, "title": "Big Talk"}
    assert job["source_size"] == 0 and job["download_url"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "answer"),
    [
        ({}, {"file": ["No file was submitted: send a file, or a source_url to import it from."]}),
        ({"source_url": "ftp://media.example/a.mp4"}, {"source_url": ["Only http and https URLs can be imported."]}),
        ({"source_url": "http://user:pw@media.example/a.mp4"},
         {"source_url": ["A URL with a user name or password cannot be imported."]}),
        ({"source_url": "not a url"}, {"source_url": ["Only http and https URLs can be imported."]}),
    ],
)
def test_a_missing_or_bad_source_names_the_field(api_client, fields, answer):
    response = api_client.post("/api/conversions/", fields, format="multipart")
    assert (response.status_code, response.json()) == (400, answer)
    assert Conversion.objects.count() == 0


@pytest.mark.django_db
def test_a_file_and_a_source_url_together_are_refused(api_client, media):
    response = upload(api_client, media("mp4_aac"), source_url="https://media.example/a.mp4")
    assert (response.status_code, response.json()) == (
        400, {"source_url": ["Send either a file or a source_url, not both."]}
    )
    assert Conversion.objects.count() == 0


@pytest.mark.django_db
def test_a_source_url_meets_the_account_gate_and_limits(api_client, user):
    user.email_verified = False
    user.save()
    refused = api_client.post("/api/conversions/", {"source_url": "https://media.example/a.mp4"}, format="multipart")
    assert (refused.status_code, refused.json()["code"]) == (403, "email_not_verified")
    user.email_verified, user.quota_active_jobs = True, 0
    user.save()
    limited = api_client.post("/api/conversions/", {"source_url": "https://media.example/a.mp4"}, format="multipart")
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
    assert Conversion.objects.count() == 0


@pytest.mark.django_db
def test_an_expired_job_shows_its_status_and_cannot_be_retried(api_client, user):
    failed = ConversionFactory(owner=user, status="failed", finished_at=timezone.now(), error_code="corrupt_media",
                               error_message="The file is damaged: its audio could not be decoded.")
    assert api_client.get(f"/api/conversions/{failed.id}/").json()["status"] == "failed"
    conversions_expire(now=timezone.now() + timedelta(hours=25))

    body = api_client.get(f"/api/conversions/{failed.id}/").json()
    assert (body["status"], body["download_url"], body["error"]["code"]) == ("expired", None, "corrupt_media")
    assert [job["status"] for job in api_client.get("/api/conversions/").json()["results"]] == ["expired"]
    retry = api_client.post(f"/api/conversions/{failed.id}/retry/")
    assert retry.status_code == 410
    assert retry.json() == {"code": "conversion_expired", "detail": RETRY_EXPIRED}
    assert api_client.post(f"/api/conversions/{failed.id}/cancel/").status_code == 409
    assert Conversion.objects.get(pk=failed.pk).status == Conversion.Status.EXPIRED


@pytest.mark.django_db
def test_an_expired_jobs_download_and_tracks_answer_410_with_a_sentence(api_client, user):
    done = DoneConversionFactory(owner=user)
    assert conversions_expire(now=timezone.now() + timedelta(days=31)).expired == [done.id]
    assert not default_storage.exists(done.mp3.name)
    download = api_client.get(f"/api/conversions/{done.id}/download/")
    assert download.status_code == 410
    assert download.json() == {"code": "conversion_expired", "detail": ConversionExpired.message}
    track = api_client.get(f"/api/conversions/{done.id}/tracks/1/download/")
    assert (track.status_code, track.json()["code"]) == (410, "conversion_expired")
