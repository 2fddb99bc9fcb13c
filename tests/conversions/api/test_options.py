"""Output options, progress, cancel and retry through the API, end to end: real uploads, RabbitMQ, MariaDB, worker
processes and ffmpeg. Nothing here is mocked; refusals that never reach a worker run without the workers."""

import re
import uuid
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.test import Client

from conversions.models import Conversion
from tests.conversions.api.helpers import classic_token, job_url, mp3_bytes, upload, wait_finished, wait_running
from tests.factories import ConversionFactory
from tests.media import decoded_duration, probe_output
from tests.utils import jobs, stored_files, wait_for

# The applied-options case: a 3 s video, trimmed to 0.5-2.5 s, mono 22050 Hz, tagged in several scripts, with a cover.
TAGS = {"title": "Ünïcødé — 日本語のタイトル", "artist": "Björk & 坂本龍一", "album": "Ålbum № 5 ✓"}
APPLIED = {"sample_rate": 22050, "channels": 1, "trim_start": 0.5, "trim_end": 2.5, "cover": True, **TAGS}
# One MP3 frame at 22050 Hz is 1152 samples; the trimmed audio may differ from 2.0 s by that, plus a little.
FRAME_TOLERANCE = 1152 / 22050 + 0.02
# A long source: converting it takes several seconds here, time enough to watch it run and cancel it.
LONG_SECONDS = 1200


def download_to(client, job_id, path: Path) -> Path:
    response = client.get(job_url(job_id, "download"))
    assert response.status_code == 200, response.status_code
    path.write_bytes(mp3_bytes(response))
    return path


def assert_applied(mp3: Path) -> None:
    """The MP3 carries every option of APPLIED."""
    probed = probe_output(mp3)
    [audio] = probed["audio"]
    assert (audio["codec"], audio["sample_rate"], audio["channels"]) == ("mp3", 22050, 1)
    assert decoded_duration(mp3) == pytest.approx(2.0, abs=FRAME_TOLERANCE)
    assert {key: probed["tags"].get(key) for key in TAGS} == TAGS
    [cover] = probed["video"]
    assert "attached pic" in cover["dispositions"]
    assert cover["codec"] == "mjpeg"


def ffmpeg_processes(marker: str) -> list[list[str]]:
    """Command lines of running ffmpeg conversions (they report with -progress) that mention `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = [arg.decode(errors="replace") for arg in (entry / "cmdline").read_bytes().split(b"\0") if arg]
        except OSError:  # the process ended while we looked
            continue
        if "-progress" in args and any(marker in arg for arg in args):
            found.append(args)
    return found


def running_conversion_workdir(convert_worker) -> Path:
    """The temporary work dir of the one conversion the convert worker is running (its ffmpeg's input folder)."""
    marker = f"{convert_worker.tmpdir}/mp3converter-"
    [args] = wait_for(lambda: ffmpeg_processes(marker), timeout=30, message="the worker's ffmpeg to run")
    source = next(arg for arg in args if arg.startswith(f"file:{marker}"))
    return Path(source.removeprefix("file:")).parent


def wait_stopped(convert_worker, workdir: Path) -> None:
    """ffmpeg for this work dir is gone, and the worker removed every temporary dir it made.

    A cancel is noticed within about a second; the deadline is well short of the time the rest of a LONG_SECONDS
    conversion takes, so an ffmpeg left to finish on its own fails this.
    """
    wait_for(lambda: not ffmpeg_processes(str(workdir)), timeout=5, message="the cancelled ffmpeg to stop")
    wait_for(lambda: not list(convert_worker.tmpdir.glob("mp3converter-*")), timeout=15,
             message="the worker's temporary dir to be removed")


def tasks_succeeded(worker, task: str, *, since: int) -> int:
    """How many `task`s the worker logged as succeeded after the first `since` characters of its log."""
    return len(re.findall(rf"Task conversions\.tasks\.{task}\[[^]]+\] succeeded in", worker.log()[since:]))


# --- 1. Every option is validated, naming the field --------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"bitrate_kbps": 100}, "bitrate_kbps"),
        ({"vbr_quality": 10}, "vbr_quality"),
        ({"bitrate_kbps": 128, "vbr_quality": 2}, "vbr_quality"),
        ({"sample_rate": 44000}, "sample_rate"),
        ({"channels": 3}, "channels"),
        ({"trim_start": -1}, "trim_start"),
        ({"trim_start": 1.5, "trim_end": 1.5}, "trim_end"),
        ({"trim_start": 1.5, "trim_end": 1.0}, "trim_end"),
        ({"title": "x" * 201}, "title"),
        ({"audio_track": -1}, "audio_track"),
    ],
)
def test_invalid_option_is_refused_with_400_naming_the_field(api_client, media, fields, field):
    before = stored_files()
    response = upload(api_client, media("mp4_aac"), **fields)
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body) == [field]
    [message] = body[field]
    assert len(message) > 15  # a sentence, not a bare code
    assert Conversion.objects.count() == 0
    assert stored_files() == before


def test_choosing_both_bitrate_and_vbr_names_both_in_the_message(api_client, media):
    response = upload(api_client, media("mp4_aac"), bitrate_kbps=128, vbr_quality=2)
    assert response.status_code == 400
    [message] = response.json()["vbr_quality"]
    assert "bitrate_kbps" in message and "vbr_quality" in message


# --- 2. Options are stored, shown and applied --------------------------------------------------------------------
@pytest.mark.e2e
def test_options_are_stored_shown_and_applied(live_workers, api_client, media, tmp_path):
    response = upload(api_client, media("mp4_aac", duration=3.0), **APPLIED)
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["options"] == APPLIED
    assert Conversion.objects.get(pk=job["id"]).options == APPLIED

    finished = wait_finished(api_client, job["id"])
    assert finished["status"] == "done", finished
    assert finished["options"] == APPLIED
    assert finished["duration_seconds"] == pytest.approx(2.0, abs=FRAME_TOLERANCE)
    assert_applied(download_to(api_client, job["id"], tmp_path / "out.mp3"))


@pytest.mark.e2e
def test_title_defaults_to_the_file_name_stem_and_only_chosen_options_are_stored(live_workers, api_client, media):
    response = upload(api_client, media("mkv_opus"), vbr_quality=0, trim_start=0)
    assert response.status_code == 202, response.content
    # vbr_quality=0 and trim_start=0 are real choices and kept; nothing else is filled in but the title.
    assert response.json()["options"] == {"vbr_quality": 0, "trim_start": 0.0, "title": "clip"}
    assert wait_finished(api_client, response.json()["id"])["status"] == "done"


@pytest.mark.e2e
def test_classic_upload_applies_the_same_options_as_form_fields(live_workers, api_client, user, media, tmp_path):
    classic = Client()
    token = classic_token(classic, user)
    with open(media("mp4_aac", duration=3.0), "rb") as source:
        response = classic.post("/upload", {"file": source, **APPLIED}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    fid = response.content.decode().removeprefix("success! fid=")
    assert Conversion.objects.get(pk=fid).options == APPLIED

    assert wait_finished(api_client, fid)["status"] == "done"
    download = classic.get("/download", {"fid": fid}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert download.status_code == 200
    mp3 = tmp_path / "classic.mp3"
    mp3.write_bytes(mp3_bytes(download))
    assert_applied(mp3)


def test_classic_upload_refuses_a_bad_option_naming_the_field(api_client, user, media):
    classic = Client()
    token = classic_token(classic, user)
    with open(media("mp4_aac"), "rb") as source:
        response = classic.post("/upload", {"file": source, "channels": 3}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400
    assert response.content.decode().startswith("channels: ")
    assert Conversion.objects.count() == 0


# --- 3. Checks against the probed file, and the audio track ------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"trim_start": 5}, "trim_start is 5 s, but the file is only 2.00 s long."),
        ({"trim_end": 30}, "trim_end is 30 s, but the file is only 2.00 s long."),
    ],
)
def test_trim_beyond_the_probed_duration_is_refused_with_422(api_client, media, fields, detail):
    before = stored_files()
    response = upload(api_client, media("mp4_aac"), **fields)
    assert response.status_code == 422, response.content
    assert response.json() == {"code": "trim_out_of_range", "detail": detail}
    assert Conversion.objects.count() == 0
    assert stored_files() == before


@pytest.mark.parametrize(
    ("spec", "track", "message"),
    [
        ("mp4_aac", 5, "This file has 1 audio track: choose 0 to 0."),
        ("mkv_two_tracks", 2, "This file has 2 audio tracks: choose 0 to 1."),
    ],
)
def test_audio_track_the_file_does_not_have_is_refused_with_400(api_client, media, spec, track, message):
    before = stored_files()
    response = upload(api_client, media(spec), audio_track=track)
    assert response.status_code == 400, response.content
    assert response.json() == {"audio_track": [message]}
    assert Conversion.objects.count() == 0
    assert stored_files() == before


@pytest.mark.e2e
def test_audio_track_chooses_the_stream(live_workers, api_client, media, tmp_path):
    source = media("mkv_two_tracks")  # a:0 stereo (not default), a:1 mono (default)
    chosen = upload(api_client, source, audio_track=0).json()
    default = upload(api_client, source).json()
    assert chosen["options"] == {"audio_track": 0, "title": "two_tracks"}
    assert default["options"] == {"title": "two_tracks"}
    for job in (chosen, default):
        assert wait_finished(api_client, job["id"])["status"] == "done"
    channels = {
        name: probe_output(download_to(api_client, job["id"], tmp_path / f"{name}.mp3"))["audio"][0]["channels"]
        for name, job in (("chosen", chosen), ("default", default))
    }
    assert channels == {"chosen": 2, "default": 1}


# --- 4. Progress -------------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_progress_is_0_when_queued_and_100_when_done(live_workers, api_client, media):
    job = upload(api_client, media("webm_vorbis")).json()
    assert (job["status"], job["progress"]) == ("queued", 0)
    finished = wait_finished(api_client, job["id"])
    assert (finished["status"], finished["progress"]) == ("done", 100)


# --- 5. Cancel a running conversion, then retry it ---------------------------------------------------------------
@pytest.mark.e2e
def test_cancel_stops_ffmpeg_and_keeps_nothing_then_retry_converts(live_workers, api_client, user, media, mailbox):
    worker, notifier = live_workers["convert-worker"], live_workers["notify-worker"]
    job = upload(api_client, media("flac", duration=LONG_SECONDS)).json()
    wait_running(api_client, job["id"])
    workdir = running_conversion_workdir(worker)
    assert workdir.parent == worker.tmpdir

    notify_log_before = len(notifier.log())
    response = api_client.post(job_url(job["id"], "cancel"))
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "cancelled"
    assert response.json()["error"] == {"code": "cancelled", "message": "The conversion was cancelled."}
    assert response.json()["download_url"] is None

    wait_stopped(worker, workdir)
    # The chain's notify step runs once the stopped conversion returns; it must send nothing for a cancelled job.
    wait_for(lambda: tasks_succeeded(notifier, "notify_owner_task", since=notify_log_before), timeout=30,
             message="the notify step of the cancelled job to run")
    cancelled = jobs().get(pk=job["id"])
    assert cancelled.status == Conversion.Status.CANCELLED
    assert not cancelled.mp3
    assert not default_storage.exists(f"mp3/{job['id']}-1.mp3")
    assert cancelled.notified_at is None
    assert mailbox.to(user.email) == []
    assert api_client.get(job_url(job["id"], "download")).status_code == 409

    retried = api_client.post(job_url(job["id"], "retry"))
    assert retried.status_code == 202, retried.content
    assert (retried.json()["status"], retried.json()["progress"], retried.json()["error"]) == ("queued", 0, None)
    assert Conversion.objects.get(pk=job["id"]).attempt == 2

    finished = wait_finished(api_client, job["id"], timeout=120)
    assert (finished["status"], finished["progress"]) == ("done", 100)
    assert finished["duration_seconds"] == pytest.approx(LONG_SECONDS, abs=0.1)
    messages = wait_for(lambda: mailbox.to(user.email), timeout=30, message="the email for the retried job")
    assert [message["Subject"] for message in messages] == ["MP3 Download"]
    assert not list(worker.tmpdir.glob("mp3converter-*"))


# --- 6. State rules ----------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_cancel_and_retry_only_where_the_state_allows(live_workers, api_client, other_client, media):
    done = upload(api_client, media("mp4_aac")).json()
    assert wait_finished(api_client, done["id"])["status"] == "done"

    response = api_client.post(job_url(done["id"], "cancel"))
    assert response.status_code == 409
    assert response.json()["detail"] == "Only queued, fetching or processing conversions can be cancelled; this one is done."
    response = api_client.post(job_url(done["id"], "retry"))
    assert response.status_code == 409
    assert response.json()["detail"] == "Only failed or cancelled conversions can be retried; this one is done."

    # A queued row with no message behind it, so no worker moves it on while we ask.
    queued = ConversionFactory(owner=Conversion.objects.get(pk=done["id"]).owner, status=Conversion.Status.QUEUED)
    response = api_client.post(job_url(queued.id, "retry"))
    assert response.status_code == 409
    assert "this one is queued" in response.json()["detail"]

    for job_id in (done["id"], queued.id):
        for action in ("cancel", "retry"):
            assert other_client.post(job_url(job_id, action)).status_code == 404
    for job_id in (uuid.uuid4(), "not-a-uuid"):
        for action in ("cancel", "retry"):
            assert api_client.post(job_url(job_id, action)).status_code == 404
    assert Conversion.objects.get(pk=done["id"]).status == Conversion.Status.DONE
    assert Conversion.objects.get(pk=queued.id).status == Conversion.Status.QUEUED


# --- 7. Errors as codes ------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_corrupt_media_then_a_retry_without_the_source_fails_with_internal_error(live_workers, api_client, media):
    job = upload(api_client, media("truncated_faststart_mp4", duration=6.0)).json()
    failed = wait_finished(api_client, job["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "corrupt_media"
    assert "damaged" in failed["error"]["message"]
    detail = Conversion.objects.get(pk=job["id"]).error_detail
    assert detail  # ffmpeg's words, kept for operators ...
    assert "error_detail" not in failed and detail not in str(failed)  # ... and never shown by the API

    conversion = Conversion.objects.get(pk=job["id"])
    default_storage.delete(conversion.source.name)
    assert api_client.post(job_url(job["id"], "retry")).status_code == 202
    failed = wait_finished(api_client, job["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "internal_error", "message": "The uploaded file is missing from storage. Please upload it again."
    }


@pytest.fixture
def undecodable_mp4(media, tmp_path) -> Path:
    """An mp4 whose audio codec ffmpeg cannot name: the `mp4a` sample entry and its `esds` descriptor renamed.

    Renaming `mp4a` alone is not enough: ffmpeg still recognises AAC from the `esds` descriptor and converts it.
    """
    data = media("mp4_aac").read_bytes()
    assert data.count(b"mp4a") == 1 and data.count(b"esds") == 1
    path = tmp_path / "undecodable.mp4"
    path.write_bytes(data.replace(b"mp4a", b"zzzz").replace(b"esds", b"zzzz"))
    return path


@pytest.mark.parametrize(
    ("source", "fields", "status", "code"),
    [
        ("mp4_noaudio", {}, 422, "no_audio_stream"),
        ("text", {}, 415, "unsupported_media"),
        ("undecodable", {}, 415, "unsupported_media"),
        ("mp4_aac", {"trim_start": 2.5}, 422, "trim_out_of_range"),
    ],
)
def test_unusable_uploads_are_refused_with_a_code(api_client, media, undecodable_mp4, source, fields, status, code):
    before = stored_files()
    response = upload(api_client, undecodable_mp4 if source == "undecodable" else media(source), **fields)
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert len(response.json()["detail"]) > 20
    assert Conversion.objects.count() == 0
    assert stored_files() == before


# --- 8. Admin ----------------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_admin_cancel_action_stops_a_running_conversion(live_workers, admin_client, api_client, media):
    worker = live_workers["convert-worker"]
    job = upload(api_client, media("flac", duration=LONG_SECONDS)).json()
    wait_running(api_client, job["id"])
    workdir = running_conversion_workdir(worker)

    response = admin_client.post(
        "/admin/conversions/conversion/", {"action": "cancel", "_selected_action": [job["id"]]}, follow=True
    )
    assert response.status_code == 200
    assert [str(message) for message in response.context["messages"]] == [
        "1 conversion(s) cancelled; 0 skipped (already finished)."
    ]
    body = api_client.get(job_url(job["id"])).json()
    assert (body["status"], body["error"]["code"]) == ("cancelled", "cancelled")
    wait_stopped(worker, workdir)
    assert Conversion.objects.get(pk=job["id"]).status == Conversion.Status.CANCELLED
    assert not default_storage.exists(f"mp3/{job['id']}-1.mp3")


# --- A job's own webhook -----------------------------------------------------------------------------------------
def test_webhook_url_is_stored_and_shown_and_a_private_one_refused(api_client, user, media, settings):
    refused = upload(api_client, media("mp4_aac"), webhook_url="http://127.0.0.1:9/hook")
    assert refused.status_code == 400
    assert refused.json() == {
        "webhook_url": ["The URL leads to 127.0.0.1, a loopback address, which the service may not reach."]
    }
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    accepted = upload(api_client, media("mp4_aac"), webhook_url="http://127.0.0.1:9/hook")
    assert accepted.status_code == 202, accepted.content
    assert accepted.json()["webhook_url"] == "http://127.0.0.1:9/hook"
    assert "webhook_url" not in accepted.json()["options"]  # not an audio option
    assert Conversion.objects.get().webhook_url == "http://127.0.0.1:9/hook"


def test_classic_upload_takes_webhook_url_as_a_form_field(user, media, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    classic = Client()
    token = classic_token(classic, user)
    with open(media("mp4_aac"), "rb") as source:
        response = classic.post("/upload", {"file": source, "webhook_url": "http://127.0.0.1:9/classic"},
                                HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert Conversion.objects.get().webhook_url == "http://127.0.0.1:9/classic"
