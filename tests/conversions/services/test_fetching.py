"""Import from a URL (conversions/services/fetching.py), end to end on the real fetch, convert and notify workers, from
a real local HTTP server (tests/fixtures/remote.py) that the fetch worker may reach through
OUTBOUND_ALLOWED_NETWORKS=127.0.0.1/32; its size cap is 1 MB and its read timeout 2 s (tests/fixtures/workers.py)."""

import pytest
from django.core.files.storage import default_storage

from conversions.models import Conversion
from conversions.services import conversion_fetch
from conversions.workdirs import WORKDIR_PREFIX
from tests.conversions.api.helpers import job_url, mp3_bytes, wait_finished
from tests.factories import ConversionFactory
from tests.media import probe_output
from tests.utils import stored_files, wait_for

pytestmark = pytest.mark.e2e


def import_url(client, url, **fields):
    response = client.post("/api/conversions/", {"source_url": url, **fields}, format="multipart")
    assert response.status_code == 202, response.content
    return response.json()


@pytest.fixture
def big_file(tmp_path):
    """2 MB: past the fetch worker's 1 MB cap."""
    path = tmp_path / "big.mp4"
    path.write_bytes(b"\0" * (2 * 1024 * 1024))
    return path


def test_a_url_is_fetched_through_redirects_converted_and_stored_once(
    live_workers, api_client, remote_server, media, tmp_path
):
    remote_server.serve("lecture.mp4", media("mp4_aac", duration=3.0))
    url = remote_server.url("/redirect/2/lecture.mp4")
    before = stored_files()
    job = import_url(api_client, url, bitrate_kbps=128)
    assert (job["status"], job["source_url"], job["original_filename"]) == ("queued", url, "lecture.mp4")
    assert job["options"]["title"] == "lecture"

    done = wait_finished(api_client, job["id"])
    assert done["status"] == "done", done
    assert done["source_url"] == url and done["source_size"] == media("mp4_aac", duration=3.0).stat().st_size
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(mp3_bytes(api_client.get(job_url(job["id"], "download"))))
    probed = probe_output(mp3)
    assert [stream["codec"] for stream in probed["audio"]] == ["mp3"]
    assert probed["duration"] == pytest.approx(3.0, abs=0.1)
    conversion = Conversion.objects.get(pk=job["id"])
    assert stored_files() - before == {conversion.source.name, conversion.mp3.name}


def no_workdirs(workers) -> bool:
    """No fetch's temporary folder is left in the fetch worker's TMPDIR."""
    return not any(path.name.startswith(WORKDIR_PREFIX) for path in workers["fetch-worker"].tmpdir.iterdir())


def failure_of(client, job) -> dict:
    finished = wait_finished(client, job["id"])
    assert finished["status"] == "failed", finished
    return finished["error"]


def test_a_remote_404_fails_naming_it_and_a_retry_fetches_again(live_workers, api_client, remote_server, media):
    url = remote_server.url("/files/later.mp4")
    job = import_url(api_client, url)
    error = failure_of(api_client, job)
    assert error == {
        "code": "fetch_failed", "message": "The server at 127.0.0.1 answered 404 Not Found.",
    }
    # The file appears: a retry downloads it again and converts it.
    remote_server.serve("later.mp4", media("mkv_opus"))
    assert api_client.post(job_url(job["id"], "retry")).status_code == 202
    assert wait_finished(api_client, job["id"])["status"] == "done"


@pytest.mark.parametrize("path", ["/files/big.mp4", "/unsized/big.mp4"], ids=["declared", "streamed"])
def test_a_file_over_the_size_cap_fails_with_source_too_large_and_keeps_nothing(
    live_workers, api_client, remote_server, big_file, path
):
    remote_server.serve("big.mp4", big_file)
    before = stored_files()
    error = failure_of(api_client, import_url(api_client, remote_server.url(path)))
    assert error["code"] == "source_too_large"
    assert "1 MB" in error["message"]
    assert stored_files() == before
    # The partial download goes too.
    wait_for(lambda: no_workdirs(live_workers), timeout=10, message="the fetch's temporary folder to go")


def test_six_redirects_are_too_many(live_workers, api_client, remote_server, media):
    remote_server.serve("clip.mp4", media("mp4_aac"))
    error = failure_of(api_client, import_url(api_client, remote_server.url("/redirect/6/clip.mp4")))
    assert error == {"code": "fetch_failed", "message": "The server at 127.0.0.1 redirected more than 5 times."}


def test_a_redirect_to_a_forbidden_address_is_refused(live_workers, api_client, remote_server):
    # 127.0.0.2 is loopback too, but outside the one network the suite's fetch worker may reach.
    target = "http://127.0.0.2:9/secret"
    error = failure_of(api_client, import_url(api_client, remote_server.url(f"/redirect-to?url={target}")))
    assert error["code"] == "forbidden_address"
    assert "127.0.0.2" in error["message"] and "loopback" in error["message"]
    assert not any(path.startswith("/secret") for path, _ in remote_server.requests)


def test_a_server_that_stalls_times_out_while_the_job_shows_fetching(
    live_workers, api_client, remote_server, media
):
    remote_server.serve("stall.mp4", media("mp4_aac"))
    job = import_url(api_client, remote_server.url("/slow/stall.mp4"))
    wait_for(lambda: api_client.get(job_url(job["id"])).json()["status"] == "fetching", timeout=30,
             message="the job to show fetching")
    error = failure_of(api_client, job)
    assert error["code"] == "fetch_failed"
    assert "stopped sending" in error["message"] and "127.0.0.1" in error["message"]


def test_a_job_is_cancelled_while_fetching(live_workers, api_client, remote_server, media):
    remote_server.serve("cancel.mp4", media("mp4_aac"))
    job = import_url(api_client, remote_server.url("/slow/cancel.mp4"))
    wait_for(lambda: api_client.get(job_url(job["id"])).json()["status"] == "fetching", timeout=30,
             message="the job to show fetching")
    cancelled = api_client.post(job_url(job["id"], "cancel"))
    assert (cancelled.status_code, cancelled.json()["status"]) == (202, "cancelled")
    # The stalled read gives up (2 s) and its temporary folder goes; the job stays cancelled, with nothing stored.
    wait_for(lambda: no_workdirs(live_workers), timeout=15, message="the fetch to stop")
    conversion = Conversion.objects.get(pk=job["id"])
    assert (conversion.status, conversion.source.name) == ("cancelled", "")


@pytest.mark.django_db
def test_on_default_settings_a_loopback_url_is_a_forbidden_address(user, remote_server, media, settings):
    """The service's own default: no exception to the guard, so the local server is out of reach."""
    assert settings.OUTBOUND_ALLOWED_NETWORKS == []
    remote_server.serve("local.mp4", media("mp4_aac"))
    requests_before = len(remote_server.requests)
    conversion = ConversionFactory(owner=user, source_size=0, source_url=remote_server.url("/files/local.mp4"))
    conversion_fetch(conversion_id=conversion.id, attempt=conversion.attempt)
    conversion.refresh_from_db()
    assert (conversion.status, conversion.error_code) == ("failed", "forbidden_address")
    assert conversion.error_message == (
        "The URL leads to 127.0.0.1, a loopback address, which the service may not reach."
    )
    assert len(remote_server.requests) == requests_before  # never connected
    assert not conversion.source and not default_storage.exists(f"sources/{conversion.id}")
