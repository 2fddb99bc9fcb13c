"""The MP3 write fails part-way in the worker, for real: the storage's mp3 folder is a tiny tmpfs that fills up
mid-file (ENOSPC), then is grown again. The job retries and ends done, and at no point does the API hand out a partial
MP3."""

import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from conversions.models import Conversion
from tests.conversions.api.helpers import mp3_bytes
from tests.faults.helpers import assert_finished_exactly_once, row, stored_mp3s, upload_job
from tests.media import decoded_duration
from tests.utils import wait_for

pytestmark = [pytest.mark.faults]

WAV_SECONDS = 30  # about 190 KB of MP3 at the default VBR quality
FULL_AT = "64k"  # the folder's size while "full": the MP3 write stops a third of the way in


@contextmanager
def tiny_filesystem(path: Path, size: str):
    """Mount a tmpfs of `size` on `path` (root only); unmount it on the way out."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "mp3converter-test", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)


def resize(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)


def test_storage_write_failing_part_way(live_workers, api_client, user, media, mailbox, tmp_path):
    mp3_folder = Path(settings.MEDIA_ROOT) / "mp3"
    with tiny_filesystem(mp3_folder, FULL_AT):
        job_id = upload_job(api_client, media("wav", duration=WAV_SECONDS))
        download_url = f"/api/conversions/{job_id}/download/"
        fixed = False

        def finished():
            """One look at the job while it runs, retries and finishes. Until it is done the API must not hand out
            any MP3; once the write has failed part-way, the storage is fixed (grown) for the retry."""
            nonlocal fixed
            conversion = row(job_id)
            assert conversion.status in ("queued", "processing", "done"), (conversion.status, conversion.error_code,
                                                                           conversion.error_detail)
            if conversion.status != "done":
                assert not conversion.mp3
                response = api_client.get(download_url)
                assert response.status_code == 409, response.status_code
            if not fixed and "No space left on device" in live_workers["convert-worker"].log():
                # The write failed part-way and the task is waiting for its retry (10 s). The partial file is
                # already gone: nothing half-written is ever left in the storage, let alone downloadable.
                assert stored_mp3s(job_id) == []
                resize(mp3_folder, "64m")
                fixed = True
            return fixed and conversion.status == "done" and conversion.notified_at

        wait_for(finished, timeout=60, interval=0.05, message="the write to fail, then the retry to finish the job")

        conversion = assert_finished_exactly_once(job_id, user.email, mailbox)
        assert conversion.attempt == 1 and conversion.redeliveries == 0  # a retry of the task, not a redelivery
        body = mp3_bytes(api_client.get(download_url))
        assert len(body) == conversion.mp3_size > 64 * 1024  # the whole file, not the partial one
        with default_storage.open(conversion.mp3.name, "rb") as stored:
            assert stored.read() == body
        mp3 = tmp_path / "out.mp3"
        mp3.write_bytes(body)
        assert decoded_duration(mp3) == pytest.approx(WAV_SECONDS, abs=0.1)
        assert Conversion.objects.get(pk=job_id).status == "done"
