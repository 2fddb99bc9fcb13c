"""Uploads that would make ffmpeg open something else, or cost too much, through both upload endpoints.

- Manifests (HLS, DASH, ffconcat, SDP) pointing at a real local media file or at a real local HTTP server, uploaded
  under a media name: refused with 415 `unsupported_media`, no job, nothing stored, no request to the server.
- A small file that decodes to longer than MAX_DURATION_MINUTES: refused at upload with 422 `too_long`.
- A file whose header says less than it holds, and one whose MP3 would pass MAX_OUTPUT_MB: accepted, then failed
  by the convert worker (`too_long`, `output_too_large`), leaving no MP3 and no temporary file.
"""

import pytest

from conversions import engine
from conversions.models import Conversion
from tests.fixtures.workers import purge_queues, start_worker, stop_worker
from tests.media.crafted import MANIFESTS, flac_header_claims, http_server, manifest, silent_flac
from tests.security.test_hostile_input import (
    APIS,
    accepted_id,
    assert_refused,
    files_under,
    multipart,
    post_raw,
    upload_bytes,
    wait_finished,
    with_huge_duration,
)
from tests.utils import stored_files, wait_for

TOO_LONG = "The audio in this file is longer than the 1-minute limit."
TOO_LARGE = "The MP3 would be larger than the 1 MB limit, so the conversion was stopped."


@pytest.fixture
def server():
    with http_server() as running:
        yield running


def crafted(kind: str, where: str, server, media) -> bytes:
    if kind == "sdp":
        return manifest(kind, server.url)
    if where == "http":
        return manifest(kind, f"{server.url}/holiday{'.ts' if kind == 'hls' else '.m4a'}")
    return manifest(kind, str(media("ts_aac") if kind == "hls" else media("m4a_aac")))


# --- manifests -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("name", ["holiday.mp4", "holiday.mkv", "native"])
@pytest.mark.parametrize("where", ["local", "http"])
@pytest.mark.parametrize("kind", MANIFESTS)
def test_a_manifest_uploaded_as_media_is_refused_and_opens_nothing(db, user, media, server, upload_tmp, api, kind,
                                                                    where, name):
    filename = f"holiday{MANIFESTS[kind][1]}" if name == "native" else name
    before = stored_files()
    response = upload_bytes(api, user, filename, crafted(kind, where, server, media))
    assert_refused(api, response, 415, code="unsupported_media", message=engine.UnsupportedMedia.message)
    assert Conversion.objects.count() == 0
    assert stored_files() == before
    assert files_under(upload_tmp) == []
    assert server.requests == []


def test_a_neighbour_of_the_upload_is_not_read_through_ffconcat(db, user, media, upload_tmp):
    # ffconcat's own "safe" mode allows a plain relative name: one next to the upload's temporary file.
    (upload_tmp / "neighbour.m4a").write_bytes(media("m4a_aac").read_bytes())
    response = upload_bytes("native", user, "holiday.mp4", manifest("ffconcat", "neighbour.m4a"))
    assert_refused("native", response, 415, code="unsupported_media", message=engine.UnsupportedMedia.message)
    assert Conversion.objects.count() == 0


# --- too long at upload ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("header", ["real", "none"])
def test_a_tiny_file_that_decodes_past_the_limit_is_refused(db, user, settings, upload_tmp, tmp_path, api, header):
    settings.MAX_DURATION_MINUTES = 1
    bomb = silent_flac(tmp_path / "bomb.flac", 180)
    if header == "none":
        flac_header_claims(bomb, None)  # no duration in the header: the probe measures it
    assert bomb.stat().st_size < 100_000
    before = stored_files()
    response = upload_bytes(api, user, "holiday.flac", bomb.read_bytes())
    assert_refused(api, response, 422, code="too_long", message=TOO_LONG)
    assert Conversion.objects.count() == 0
    assert stored_files() == before
    assert files_under(upload_tmp) == []


@pytest.mark.parametrize("api", APIS)
def test_headers_claiming_more_than_the_default_limit_are_refused(db, user, media, upload_tmp, api):
    assert engine.probe(media("mp4_aac")).duration == pytest.approx(2.0, abs=0.1)
    response = upload_bytes(api, user, "huge.mp4", with_huge_duration(media("mp4_aac").read_bytes()))  # 13.5 hours
    assert_refused(api, response, 422, code="too_long",
                   message="The audio in this file is longer than the 360-minute limit.")
    assert Conversion.objects.count() == 0


def test_a_file_under_the_limit_is_accepted(db, user, settings, upload_tmp, tmp_path):
    settings.MAX_DURATION_MINUTES = 1
    source = flac_header_claims(silent_flac(tmp_path / "short.flac", 30), None)
    conversion_id = accepted_id("native", upload_bytes("native", user, "short.flac", source.read_bytes()))
    assert Conversion.objects.filter(pk=conversion_id).exists()


# --- while converting: a worker with small limits ---------------------------------------------------------------
@pytest.fixture
def limited_worker(live_workers, settings, tmp_path):
    """The session's convert worker swapped, for this test, for one with a 1-minute and 1 MB limit."""
    settings.MAX_DURATION_MINUTES = 1  # as the web side would be configured too
    settings.MAX_OUTPUT_MB = 1
    live_workers.stop("convert-worker")  # the next test that wants it starts a fresh one (tests/fixtures/workers.py)
    tmpdir = tmp_path / "worker-tmp"
    tmpdir.mkdir()
    try:
        worker = start_worker("convert-worker", tmp_path, TMPDIR=str(tmpdir), MAX_DURATION_MINUTES="1",
                              MAX_OUTPUT_MB="1")
        try:
            yield worker
        finally:
            stop_worker(worker)
    finally:
        purge_queues()  # messages a failed test left in flight must not reach the next test's worker


@pytest.mark.e2e
def test_audio_longer_than_its_header_says_fails_while_converting(limited_worker, user, upload_tmp, tmp_path):
    liar = flac_header_claims(silent_flac(tmp_path / "liar.flac", 180), 10)  # 3 minutes; the header says 10 s
    conversion_id = accepted_id("native", upload_bytes("native", user, "holiday.flac", liar.read_bytes()))
    finished = wait_finished(conversion_id)
    assert (finished.status, finished.error_code, finished.error_message) == (
        Conversion.Status.FAILED, "too_long", TOO_LONG
    )
    assert not finished.mp3
    # No MP3 of this job was kept (other tests' files may share the store).
    assert not any(name.startswith(f"mp3/{conversion_id}") for name in stored_files())
    wait_for(lambda: not files_under(limited_worker.tmpdir), timeout=30, message="the worker's temp dir to be empty")


@pytest.mark.e2e
def test_an_mp3_past_the_size_cap_fails_while_converting(limited_worker, user, media, upload_tmp):
    source = media("wav", duration=40.0)  # 40 s at 320 kbps: 1.6 MB
    content, content_type = multipart(("file", "holiday.wav", source.read_bytes()), ("bitrate_kbps", None, b"320"))
    conversion_id = accepted_id("native", post_raw("native", user, content, content_type))
    finished = wait_finished(conversion_id)
    assert (finished.status, finished.error_code, finished.error_message) == (
        Conversion.Status.FAILED, "output_too_large", TOO_LARGE
    )
    # No MP3 of this job was kept (other tests' files may share the store).
    assert not any(name.startswith(f"mp3/{conversion_id}") for name in stored_files())
    wait_for(lambda: not files_under(limited_worker.tmpdir), timeout=30, message="the worker's temp dir to be empty")
