"""Convert workers killed and stopped under load: kill -9 of the whole pod, a source that kills its pool process every
time, and SIGTERM (warm, then cold shutdown). Real worker processes, RabbitMQ, MariaDB, ffmpeg and SMTP; every test
checks the end state: rows, stored MP3s, emails, processes and temporary folders."""

import os
import random
import signal
import time

import pytest
from django.conf import settings

from conversions.models import Conversion
from mp3converter.errors import ErrorCode
from tests.conversions.api.helpers import wait_running
from tests.factories import UserFactory
from tests.faults.helpers import (
    alive,
    assert_finished_exactly_once,
    children,
    conversion_workdir,
    emails_about,
    kill_worker_group,
    proc,
    queue_depth,
    row,
    stored_mp3s,
    upload_job,
    wait_done_and_notified,
    wait_ffmpeg,
    workdirs,
)
from tests.fixtures.users import bearer_client
from tests.utils import wait_for

pytestmark = [pytest.mark.faults]

# normalize=true (EBU R128 loudnorm) makes ffmpeg work for a few seconds on a small file: time to kill it mid-way.
SLOW = {"normalize": "true"}
# A single job to kill mid-conversion: about 4-6 s of ffmpeg here.
LONG_WAV_SECONDS = 60
# The loop's jobs: about 1-2 s of ffmpeg each.
LOOP_WAV_SECONDS = 20
LOOP_JOBS = 8
LOOP_SEED = 20240611


# --- 1. kill -9 of the worker pod ----------------------------------------------------------------------------------
def test_kill9_midconversion_finishes_exactly_once(convert_workers, api_client, user, media, mailbox):
    worker = convert_workers()
    job_id = upload_job(api_client, media("wav", duration=LONG_WAV_SECONDS), **SLOW)
    wait_running(api_client, job_id)
    ffmpeg = wait_ffmpeg(worker)
    workdir = conversion_workdir(ffmpeg)
    pool_child = proc(ffmpeg.ppid)
    assert pool_child is not None and pool_child.ppid == worker.process.pid  # main → pool child → ffmpeg

    kill_worker_group(worker)

    # ffmpeg is in a session of its own; PR_SET_PDEATHSIG kills it with the pool process that started it.
    wait_for(lambda: not alive(ffmpeg.pid), timeout=5, interval=0.02, message="the orphaned ffmpeg to die")
    killed = row(job_id)
    assert killed.status == Conversion.Status.PROCESSING  # neither done nor failed: the job is handed back
    assert not killed.mp3
    assert workdir.exists()  # what the killed process left behind...
    # RabbitMQ took the unacknowledged message back when the worker's connection dropped.
    wait_for(lambda: queue_depth("convert") == (1, 0), timeout=15, message="the job's message back in the queue")

    convert_workers()
    # ...is swept by the new worker's pool process as it starts, before (or while) it takes the job again.
    wait_for(lambda: not workdir.exists(), timeout=15, message=f"the new worker to sweep {workdir.name}")
    wait_done_and_notified(job_id)
    conversion = assert_finished_exactly_once(job_id, user.email, mailbox)
    assert conversion.redeliveries == 1
    assert conversion.duration_seconds == pytest.approx(LONG_WAV_SECONDS, abs=0.1)
    download = api_client.get(f"/api/conversions/{job_id}/download/")
    assert download.status_code == 200
    assert len(b"".join(download.streaming_content)) == conversion.mp3_size
    wait_for(lambda: not workdirs(convert_workers.tmpdir), timeout=15, message="no work dir left")
    assert len(emails_about(mailbox, job_id)) == 1  # still one, now that everything has settled


def test_kill9_at_random_moments_every_job_finishes_exactly_once(convert_workers, media, mailbox):
    """Jobs in a row, each with its worker pod killed at a random moment (seeded), and a new worker started:

    - "reserved": the worker holds the job's message (RabbitMQ has handed it over, unacknowledged) but has not
      started it: its pool process is stopped (SIGSTOP) so that moment lasts long enough to kill in;
    - "upload": a few milliseconds after the upload, wherever the job has got to;
    - "ffmpeg": while ffmpeg converts, a random time into it;
    - "done": as soon as the row is done, before (or while) the owner is notified.

    Every job ends done, with one MP3 and one email.
    """
    rng = random.Random(LOOP_SEED)
    moments = ["reserved", "upload", "ffmpeg", "done"] * (LOOP_JOBS // 4)
    rng.shuffle(moments)
    source = media("wav", duration=LOOP_WAV_SECONDS)
    worker = convert_workers()
    jobs, seen = [], []
    for moment in moments:
        owner = UserFactory()
        if moment == "reserved":
            # The previous job's message is acknowledged (the worker is idle), then its pool process is paused.
            wait_for(lambda: queue_depth("convert") == (0, 0), timeout=15, message="the convert queue to be empty")
            for pool_process in children(worker.process.pid):
                os.kill(pool_process.pid, signal.SIGSTOP)
        job_id = upload_job(bearer_client(owner), source, **SLOW)
        ffmpeg = running = None
        if moment == "reserved":
            wait_for(lambda: queue_depth("convert") == (0, 1), timeout=15,
                     message="the worker to hold the job's message, unacknowledged")
        elif moment == "upload":
            time.sleep(rng.uniform(0, 0.05))  # fault injection: the kill lands a random moment after the upload
        elif moment == "ffmpeg":
            ffmpeg = wait_ffmpeg(worker)
            time.sleep(rng.uniform(0, 0.5))  # fault injection: somewhere in the 1-2 s ffmpeg runs
            running = alive(ffmpeg.pid)
        else:
            wait_for(lambda: row(job_id).status == "done", timeout=60, interval=0.01, message="the job to be done")
        kill_worker_group(worker)
        # Nothing can change the row between the kill and the next worker's start: this is its state at the kill.
        at_kill = row(job_id)
        seen.append((moment, at_kill.status, "ffmpeg running" if running else "",
                     "notified" if at_kill.notified_at else "not notified"))
        if ffmpeg is not None:
            wait_for(lambda: not alive(ffmpeg.pid), timeout=5, interval=0.02, message="the orphaned ffmpeg to die")
        worker = convert_workers()
        wait_done_and_notified(job_id, timeout=60)
        jobs.append((job_id, owner.email))

    for job_id, email in jobs:
        assert_finished_exactly_once(job_id, email, mailbox)
    # The targeted moments were hit.
    assert all(status == "queued" for moment, status, _, _ in seen if moment == "reserved"), seen
    assert all(status == "done" for moment, status, _, _ in seen if moment == "done"), seen
    assert any(running for moment, _, running, _ in seen if moment == "ffmpeg"), seen
    wait_for(lambda: not workdirs(convert_workers.tmpdir), timeout=15, message="every work dir to be swept")


# --- 2. A source that kills its worker every time ------------------------------------------------------------------
def test_job_that_kills_its_worker_every_time_stops_after_the_redelivery_limit(convert_workers, api_client, user,
                                                                              media, mailbox):
    """Stands in for a file that crashes the pool process converting it (a decoder bug, an OOM kill): whenever the job
    is processing, its pool process is SIGKILLed. RabbitMQ hands the message back each time (task_reject_on_worker_lost);
    the job must fail after CONVERSION_MAX_REDELIVERIES redeliveries instead of crashing workers forever."""
    limit = settings.CONVERSION_MAX_REDELIVERIES
    worker = convert_workers()
    job_id = upload_job(api_client, media("wav", duration=LONG_WAV_SECONDS), **SLOW)

    starts, killed_pool_processes = [], []
    deadline = time.monotonic() + 120
    while (current := row(job_id)).status in ("queued", "processing"):
        assert time.monotonic() < deadline, f"the job is still {current.status} after {len(starts)} starts"
        assert len(starts) <= limit + 1, f"the job was started {len(starts)} times"
        if current.status == "processing" and current.started_at not in starts:
            starts.append(current.started_at)
            ffmpeg = wait_ffmpeg(worker)
            pool_child = proc(ffmpeg.ppid)
            assert pool_child is not None and pool_child.ppid == worker.process.pid
            os.kill(pool_child.pid, signal.SIGKILL)
            killed_pool_processes.append(pool_child.pid)
            wait_for(lambda: not alive(ffmpeg.pid), timeout=5, interval=0.02, message="ffmpeg to die with its parent")
        time.sleep(0.05)  # poll interval of this deadline loop

    failed = row(job_id)
    assert failed.status == Conversion.Status.FAILED
    assert failed.error_code == ErrorCode.INTERNAL_ERROR
    assert "stopped the worker every time" in failed.error_message
    assert failed.redeliveries == limit + 1  # counted on each redelivery; the one past the limit fails the job
    assert len(starts) == limit + 1, starts  # the first delivery and `limit` redeliveries
    assert len(set(killed_pool_processes)) == len(starts)  # each start ran in a fresh pool process
    assert not failed.mp3 and not stored_mp3s(job_id)
    # The worker itself survived every crash of its pool process...
    assert worker.process.poll() is None, worker.log()[-3000:]
    # ...and still converts.
    next_job = upload_job(api_client, media("mp4_aac"))
    wait_done_and_notified(next_job)
    messages = wait_for(lambda: emails_about(mailbox, job_id), timeout=30, message="the failure email")
    assert [message["Subject"] for message in messages] == ["MP3 conversion failed"]
    assert "stopped the worker every time" in messages[0].get_payload(decode=True).decode()
    assert worker.process.poll() is None
    wait_for(lambda: not workdirs(convert_workers.tmpdir), timeout=15, message="every work dir to be swept")


# --- 3. SIGTERM: warm shutdown, then cold ----------------------------------------------------------------------------
def test_sigterm_lets_the_running_job_finish_before_the_worker_exits(convert_workers, api_client, user, media,
                                                                   mailbox):
    """Warm shutdown (SIGTERM, what Kubernetes sends first): the worker stops taking jobs but finishes the one it runs."""
    worker = convert_workers()
    job_id = upload_job(api_client, media("wav", duration=LONG_WAV_SECONDS), **SLOW)
    wait_running(api_client, job_id)
    worker.process.send_signal(signal.SIGTERM)
    returncode = worker.process.wait(timeout=90)
    assert returncode == 0, worker.log()[-3000:]
    # No other worker ever ran: the stopping worker itself finished the job.
    assert row(job_id).status == Conversion.Status.DONE
    wait_done_and_notified(job_id)
    conversion = assert_finished_exactly_once(job_id, user.email, mailbox)
    assert conversion.redeliveries == 0
    assert not workdirs(convert_workers.tmpdir)


def test_sigterm_hands_the_job_back(convert_workers, api_client, user, media, mailbox):
    """SIGTERM, then SIGQUIT before the job is done (a cold shutdown, as when the grace period runs out and the
    worker must go now): the worker stops its conversion and exits; the message goes back to the queue and a new
    worker converts the job, once."""
    worker = convert_workers()
    job_id = upload_job(api_client, media("wav", duration=LONG_WAV_SECONDS), **SLOW)
    wait_running(api_client, job_id)
    ffmpeg = wait_ffmpeg(worker)
    workdir = conversion_workdir(ffmpeg)
    worker.process.send_signal(signal.SIGTERM)
    assert row(job_id).status == "processing"  # still converting: the cold shutdown below interrupts it
    worker.process.send_signal(signal.SIGQUIT)
    worker.process.wait(timeout=30)
    wait_for(lambda: not alive(ffmpeg.pid), timeout=5, message="the conversion's ffmpeg to stop")
    interrupted = row(job_id)
    assert interrupted.status == Conversion.Status.PROCESSING, (interrupted.status, interrupted.error_code,
                                                                interrupted.error_message, interrupted.error_detail)
    assert not interrupted.mp3
    assert not emails_about(mailbox, job_id)
    assert queue_depth("convert") == (1, 0)  # the message went back to the queue

    convert_workers()
    wait_done_and_notified(job_id)
    conversion = assert_finished_exactly_once(job_id, user.email, mailbox)
    assert conversion.redeliveries == 1
    wait_for(lambda: not workdir.exists() and not workdirs(convert_workers.tmpdir), timeout=15,
             message="no work dir left")
