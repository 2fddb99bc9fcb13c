"""POST /api/conversions/zip/: several done MP3s as one streamed ZIP, converted by a real worker; the refusals."""

import io
import uuid
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from tests.conversions.api.helpers import convert_all, mp3_bytes
from tests.factories import ConversionFactory
from tests.media import probe_output

ZIP_URL = "/api/conversions/zip/"


def test_the_route_is_not_taken_for_a_jobs_id():
    assert reverse("conversion-zip") == ZIP_URL


@pytest.mark.e2e
def test_two_converted_jobs_in_one_zip(live_workers, api_client, media, tmp_path):
    ids = convert_all(api_client, [media("mp4_aac"), media("mkv_opus")])
    downloads = [mp3_bytes(api_client.get(f"/api/conversions/{conversion_id}/download/")) for conversion_id in ids]

    response = api_client.post(ZIP_URL, {"ids": ids}, format="json")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert not isinstance(response.streaming_content, bytes | bytearray)  # an iterator: the ZIP is never in memory
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="mp3s-')
    assert response["Cache-Control"] == "private, no-store"
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)

    with zipfile.ZipFile(io.BytesIO(body)) as unpacked:
        assert unpacked.testzip() is None
        # Both sources are named clip.*: the second MP3 gets a number.
        assert unpacked.namelist() == ["clip.mp3", "clip (2).mp3"]
        assert [unpacked.read(name) for name in unpacked.namelist()] == downloads
        for name in unpacked.namelist():
            (tmp_path / name).write_bytes(unpacked.read(name))
            probed = probe_output(tmp_path / name)
            assert [stream["codec"] for stream in probed["audio"]] == ["mp3"], name
            assert probed["duration"] == pytest.approx(2.0, abs=0.2), name

    # The same as a form, the ids repeated (as a plain HTML form sends them).
    as_form = api_client.post(ZIP_URL, {"ids": ids})
    assert as_form.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(as_form.streaming_content))) as unpacked:
        assert [unpacked.read(name) for name in ("clip.mp3", "clip (2).mp3")] == downloads


# --- refusals (rows made directly; nothing is converted) ------------------------------------------------------
@pytest.fixture
def done_job(user):
    job = ConversionFactory.build(owner=user, original_filename="song.mp4", status="done", finished_at=timezone.now())
    job.mp3.save("ignored.mp3", ContentFile(b"ID3 mp3 bytes"), save=False)
    job.mp3_size = job.mp3.size
    job.save()
    yield job
    job.mp3.storage.delete(job.mp3.name)


@pytest.mark.django_db
def test_another_users_job_is_not_found(api_client, other_client, done_job):
    response = other_client.post(ZIP_URL, {"ids": [str(done_job.id)]}, format="json")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": f"There is no conversion with the id {done_job.id}."}
    unknown = uuid.uuid4()
    response = api_client.post(ZIP_URL, {"ids": [str(done_job.id), str(unknown)]}, format="json")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": f"There is no conversion with the id {unknown}."}
    assert api_client.post(ZIP_URL, {"ids": [str(done_job.id)]}, format="json").status_code == 200


@pytest.mark.django_db
def test_a_queued_job_is_a_conflict_naming_it(api_client, user, done_job):
    queued = ConversionFactory(owner=user, original_filename="later.mp4", status="queued")
    response = api_client.post(ZIP_URL, {"ids": [str(done_job.id), str(queued.id)]}, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "code": "invalid_state",
        "detail": f"Only done conversions go into a ZIP: {queued.id} (later.mp4) is queued.",
    }


@pytest.mark.django_db
def test_an_expired_job_is_gone_naming_it(api_client, user, done_job):
    expired = ConversionFactory(owner=user, original_filename="old.mp4", status="expired")
    response = api_client.post(ZIP_URL, {"ids": [str(done_job.id), str(expired.id)]}, format="json")
    assert response.status_code == 410
    assert response.json() == {
        "code": "conversion_expired",
        "detail": "Expired conversions have no MP3 any more (their files were removed after the time this service "
        f"keeps them): {expired.id} (old.mp4).",
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "fmt", "expected"),
    [
        ({"ids": []}, "json", {"ids": ["Choose at least one conversion."]}),
        ({}, "json", {"ids": ["Choose at least one conversion."]}),
        ({}, "multipart", {"ids": ["Choose at least one conversion."]}),
        ({"ids": "abc"}, "json", {"ids": ['Expected a list of items but got type "str".']}),
        ({"ids": ["abc"]}, "json", {"ids": {"0": ["Must be a valid UUID."]}}),
        ({"ids": [str(uuid.uuid4()) for _ in range(101)]}, "json",
         {"ids": ["At most 100 conversions fit in one ZIP."]}),
    ],
    ids=["empty", "missing", "empty-form", "not-a-list", "not-a-uuid", "too-many"],
)
def test_bad_requests_name_the_field(api_client, body, fmt, expected):
    response = api_client.post(ZIP_URL, body, format=fmt)
    assert response.status_code == 400
    assert response.json() == expected


@pytest.mark.django_db
def test_any_accept_header_gets_the_zip_or_a_json_error(api_client, done_job):
    ok = api_client.post(ZIP_URL, {"ids": [str(done_job.id)]}, format="json", HTTP_ACCEPT="application/zip")
    assert ok.status_code == 200 and ok["Content-Type"] == "application/zip"
    refused = api_client.post(ZIP_URL, {"ids": []}, format="json", HTTP_ACCEPT="application/zip")
    assert refused.status_code == 400 and refused["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_only_post(api_client):
    assert api_client.get(ZIP_URL).status_code == 405
