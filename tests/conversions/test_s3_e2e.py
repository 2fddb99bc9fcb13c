"""Files in S3, end to end: the API and a real convert worker store in a bucket of moto's S3 server, both configured
only through the environment (S3_BUCKET and friends), as a deployment would be."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from conversions.models import Conversion
from tests.conversions.api.helpers import mp3_bytes, upload, wait_finished
from tests.fixtures.workers import ROOT, WorkerProcess, purge_queues, start_worker, stop_worker
from tests.media import decoded_duration
from tests.utils import wait_for

pytestmark = [pytest.mark.e2e]

PREFIX = "media"
WAV_SECONDS = 60  # a 10 MB source: past s3transfer's 8 MB threshold, so the upload goes in parts


@dataclass
class S3Deployment:
    worker: WorkerProcess
    bucket: str


def storages_from_settings(env: dict[str, str]) -> dict:
    """STORAGES as the project's settings build them from `env`, read in a fresh process."""
    code = "import django, json; django.setup(); from django.conf import settings; print(json.dumps(settings.STORAGES))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def s3_deployment(live_workers, s3_server, s3_credentials, settings, tmp_path):
    """The session's convert worker swapped, for this test, for one storing in a fresh bucket; this process stores
    there too. The session's worker comes back for the next test that wants it."""
    bucket = s3_server.new_bucket()
    env = s3_server.storage_env(bucket, S3_PREFIX=PREFIX)
    # This process stores as the settings make it from the same environment as the worker's.
    settings.STORAGES = storages_from_settings(env)
    assert settings.STORAGES["default"]["BACKEND"] == "conversions.storage.S3Storage"

    live_workers.stop("convert-worker")  # the next test that wants it starts a fresh one (tests/fixtures/workers.py)
    tmpdir = tmp_path / "worker-tmp"
    tmpdir.mkdir()
    try:
        worker = start_worker("convert-worker", tmp_path, TMPDIR=str(tmpdir), **env)
        try:
            yield S3Deployment(worker=worker, bucket=bucket)
        finally:
            stop_worker(worker)
    finally:
        purge_queues()  # messages a failed test left in flight must not reach the next test's worker


def test_upload_convert_download_and_delete_with_files_in_s3(
    s3_deployment, s3_server, api_client, user, media, mailbox, tmp_path
):
    bucket = s3_deployment.bucket
    response = upload(api_client, media("wav", duration=WAV_SECONDS))
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert s3_server.keys(bucket) == [f"{PREFIX}/sources/{job_id}"]
    source = s3_server.client().head_object(Bucket=bucket, Key=f"{PREFIX}/sources/{job_id}")
    assert source["ETag"].endswith('-2"')  # stored as a multipart upload of two parts

    finished = wait_finished(api_client, job_id)
    assert finished["status"] == "done", finished
    assert s3_server.keys(bucket) == [f"{PREFIX}/mp3/{job_id}-1.mp3", f"{PREFIX}/sources/{job_id}"]
    assert "convert_video_task" in s3_deployment.worker.log()  # this worker converted it, not another
    # The worker's temporary copy is gone, and nothing else spooled there (pymp-* is the process pool's own).
    assert [path.name for path in s3_deployment.worker.tmpdir.iterdir() if not path.name.startswith("pymp-")] == []

    url = f"/api/conversions/{job_id}/download/"
    download = api_client.get(url)
    assert download.status_code == 200
    body = mp3_bytes(download)
    assert len(body) == finished["mp3_size"] == int(download["Content-Length"]) > 100_000
    stored = s3_server.client().get_object(Bucket=bucket, Key=f"{PREFIX}/mp3/{job_id}-1.mp3")["Body"].read()
    assert stored == body
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(body)
    assert decoded_duration(mp3) == pytest.approx(WAV_SECONDS, abs=0.1)

    partial = api_client.get(url, HTTP_RANGE="bytes=50000-50099")
    assert partial.status_code == 206
    assert partial["Content-Range"] == f"bytes 50000-50099/{len(body)}"
    assert mp3_bytes(partial) == body[50000:50100]
    assert api_client.get(url, HTTP_RANGE=f"bytes={len(body)}-").status_code == 416

    wait_for(lambda: mailbox.to(user.email), timeout=30, message="the notification email")

    assert api_client.delete(f"/api/conversions/{job_id}/").status_code == 204
    assert not Conversion.objects.filter(pk=job_id).exists()
    # No orphans: no object and no unfinished multipart upload is left in the bucket.
    assert s3_server.keys(bucket) == []
    assert s3_server.unfinished_uploads(bucket) == []
