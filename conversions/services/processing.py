"""The conversion itself, as the convert worker runs it: claim the job, convert, store the MP3 (or one per chapter:
the job's tracks), record the result.

Safe to run twice for the same message (a redelivery): every step is fenced by the job's state and attempt.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from mp3converter.errors import InternalError
from mp3converter.metrics import conversion_finished_observed, redelivery_observed

from .. import engine
from ..filenames import output_name, track_name
from ..models import Conversion, Track
from ..selectors import conversion_attempt_rows
from ..storage import store_replacing
from ..workdirs import conversion_workdir, workdirs_sweep
from .lifecycle import conversion_mark_failed

logger = logging.getLogger(__name__)

Status = Conversion.Status
COPY_CHUNK_BYTES = 1024 * 1024


def heartbeat_interval() -> float:
    """Seconds between a running job's heartbeats: a few, and well inside STALE_JOB_SECONDS."""
    return min(5.0, settings.STALE_JOB_SECONDS / 4)


class ProgressReporter:
    """Writes the job's progress at most once a second, with its heartbeat at most every few seconds (in the same
    UPDATE), and stops the conversion once the job is cancelled, retried or requeued by the reconciler."""

    def __init__(self, conversion_id: uuid.UUID, attempt: int, *, interval: float = 1.0):
        self.rows = conversion_attempt_rows(conversion_id=conversion_id, attempt=attempt).filter(
            status=Status.PROCESSING
        )
        self.interval = interval
        self.beat_interval = heartbeat_interval()
        self.last_write = self.last_beat = time.monotonic()  # the claim wrote the first heartbeat

    def __call__(self, percent: float) -> None:
        now = time.monotonic()
        if now - self.last_write < self.interval:
            return
        self.last_write = now
        changes = {"progress": int(percent)}
        if now - self.last_beat >= self.beat_interval:
            self.last_beat = now
            changes["heartbeat_at"] = timezone.now()
        if not self.rows.update(**changes):
            raise engine.ConversionCancelled()  # cancelled, retried, requeued or deleted meanwhile



class Heartbeat:
    """While a job is worked on, a thread writes its heartbeat every few seconds, whatever the work is doing: copying
    the source in, probing it, cutting the cover picture, converting (which also beats with its progress) or storing
    the MP3. A phase that reports no progress for a while is then never taken for a dead worker by the reconciler.
    The thread stops with the work, or once the job is no longer this attempt's to work on."""

    def __init__(self, conversion_id: uuid.UUID, attempt: int, *, status: str = Status.PROCESSING):
        self.rows = conversion_attempt_rows(conversion_id=conversion_id, attempt=attempt).filter(status=status)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{conversion_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        # Inside a transaction (never in a worker, which runs in autocommit) another connection cannot see the claim,
        # and its UPDATE would wait on the claim's row lock: no thread then.
        if not transaction.get_connection().in_atomic_block:
            self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        try:
            while not self.stopped.wait(heartbeat_interval()):
                if not self.rows.update(heartbeat_at=timezone.now()):
                    return  # cancelled, retried, requeued or deleted: the work notices on its own
        except Exception:
            # A database that is away now: the conversion's own writes will meet it too. No beat is no harm here.
            logger.warning("heartbeat stopped: the database could not be reached", exc_info=True)
        finally:
            connections.close_all()  # this thread's own connection


def conversion_convert(
    *, conversion_id: uuid.UUID | str, attempt: int | None = None, redelivered: bool = False, retrying: bool = False
) -> None:
    """Convert a queued job's source to MP3. Safe to call again for the same job (a redelivered message).

    A queued job is claimed once. A processing one only by the message that was running it: handed back by the broker
    (`redelivered`) or retried by its own task (`retrying`); a duplicate message (the reconciler published one while
    the first was held by a worker) then changes nothing while another worker converts the job.
    """
    resumable = [Status.QUEUED, Status.PROCESSING] if redelivered or retrying else [Status.QUEUED]
    # A URL job is converted once its source is fetched (conversions/services/fetching.py), never before.
    open_rows = conversion_attempt_rows(conversion_id=conversion_id, attempt=attempt).filter(
        status__in=resumable
    ).exclude(Q(source="") & ~Q(source_url=""))
    if redelivered and too_many_redeliveries(open_rows, conversion_id, attempt):
        return
    now = timezone.now()
    claimed = open_rows.update(status=Status.PROCESSING, started_at=now, heartbeat_at=now, progress=0)
    started = time.monotonic()  # the conversion's wall time runs from the claim (conversion_duration_seconds)
    if not claimed:
        logger.info("conversion %s: nothing to do (finished, cancelled, retried or deleted)", conversion_id)
        return
    conversion = Conversion.objects.get(pk=conversion_id)
    workdirs_sweep()  # folders of conversions killed on this machine since the last sweep
    if not conversion.source or not conversion.source.storage.exists(conversion.source.name):
        conversion_mark_failed(
            conversion_id=conversion.id,
            attempt=conversion.attempt,
            error=InternalError("The uploaded file is missing from storage. Please upload it again."),
        )
        return
    options = engine.OutputOptions.from_dict(conversion.options)
    with Heartbeat(conversion.id, conversion.attempt), conversion_workdir() as workdir:
        target_path = Path(workdir) / f"output{engine.MP3.extension}"
        source_path = _local_source(conversion.source, Path(workdir) / "source")
        run = {
            "options": options,
            "on_progress": ProgressReporter(conversion.id, conversion.attempt),
            "max_duration": settings.MAX_DURATION_MINUTES * 60,
            # With split=chapters, the limit is on the tracks together.
            "max_output_bytes": settings.MAX_OUTPUT_MB * 1024 * 1024,
        }
        try:
            if options.splits_chapters:
                tracks = engine.convert_tracks(source_path, Path(workdir) / "tracks", **run)
            else:
                result = engine.convert(source_path, target_path, **run)
        except engine.MediaError as exc:
            conversion_mark_failed(conversion_id=conversion.id, attempt=conversion.attempt, error=exc)
            return
        if options.splits_chapters:
            _finish_with_tracks(conversion, tracks, _store_tracks(conversion, tracks), started=started)
            return
        mp3_name = store_replacing(target_path, output_name(conversion.id, conversion.attempt))
    finished = conversion_attempt_rows(conversion_id=conversion.id, attempt=conversion.attempt).filter(
        status=Status.PROCESSING
    ).update(
        status=Status.DONE,
        progress=100,
        mp3=mp3_name,
        mp3_size=result.size,
        duration_seconds=round(result.duration, 3),
        finished_at=timezone.now(),
        error_code="",
        error_message="",
        error_detail="",
    )
    if not finished:
        # The job was deleted or cancelled while converting: keep no file nobody owns.
        default_storage.delete(mp3_name)
        return
    _done_observed(conversion, started=started, audio_seconds=result.duration, size=result.size)
    logger.info(
        "conversion %s: done, %.1f s of audio, %d bytes%s",
        conversion.id, result.duration, result.size, " (stream copied)" if result.copied else "",
    )


def _done_observed(conversion: Conversion, *, started: float, audio_seconds: float, size: int) -> None:
    conversion_finished_observed(
        status=Status.DONE, seconds=time.monotonic() - started, audio_seconds=audio_seconds,
        bytes_in=conversion.source_size, bytes_out=size,
    )


def _local_source(source, copy_path: Path) -> Path:
    """The source as a file ffmpeg can read: in place when the store is a local folder (a 2 GB upload is not copied
    just to be read), else copied into the job's folder (GridFS, S3), which goes away with the job."""
    try:
        return Path(source.storage.path(source.name))
    except NotImplementedError:  # a store with no local path
        pass
    with source.open("rb") as stored, copy_path.open("wb") as local:
        while chunk := stored.read(COPY_CHUNK_BYTES):
            local.write(chunk)
    return copy_path


def _store_tracks(conversion: Conversion, tracks: engine.TracksResult) -> list[str]:
    """Store each chapter's MP3 under this attempt's names; a failure part-way removes the ones stored so far."""
    names = []
    try:
        for track in tracks.tracks:
            names.append(store_replacing(track.path, track_name(conversion.id, conversion.attempt, track.number)))
    except Exception:
        _delete_files(names)
        raise
    return names


def _finish_with_tracks(
    conversion: Conversion, tracks: engine.TracksResult, names: list[str], *, started: float
) -> None:
    """Move the job to done together with its tracks' rows, in one transaction. A job cancelled, retried or deleted
    meanwhile keeps no track file; so does one whose rows could not be written (the task's retry makes them again)."""
    rows = conversion_attempt_rows(conversion_id=conversion.id, attempt=conversion.attempt)
    try:
        with transaction.atomic():
            finished = rows.filter(status=Status.PROCESSING).update(
                status=Status.DONE, progress=100, mp3="", mp3_size=tracks.size,
                duration_seconds=round(tracks.duration, 3), finished_at=timezone.now(),
                error_code="", error_message="", error_detail="",
            )
            if finished:
                # Rows a crashed run of this attempt could not have written, but an earlier attempt's would be
                # replaced here: their files go once this commits.
                earlier = list(Track.objects.filter(conversion_id=conversion.id).values_list("mp3", flat=True))
                Track.objects.filter(conversion_id=conversion.id).delete()
                Track.objects.bulk_create(
                    Track(conversion_id=conversion.id, number=track.number, title=track.title,
                          start_seconds=round(track.start, 3), duration_seconds=track.duration, mp3=name,
                          size=track.size)
                    for track, name in zip(tracks.tracks, names, strict=True)
                )
                transaction.on_commit(lambda: _delete_files([name for name in earlier if name not in names]))
    except Exception:
        _delete_files(names)
        raise
    if not finished:
        _delete_files(names)
        return
    _done_observed(conversion, started=started, audio_seconds=tracks.duration, size=tracks.size)
    logger.info(
        "conversion %s: done, %d tracks, %.1f s of audio, %d bytes",
        conversion.id, len(names), tracks.duration, tracks.size,
    )


def _delete_files(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


def conversion_heartbeat(*, conversion_id: uuid.UUID | str, attempt: int | None, at) -> None:
    """Set a fetching or processing job's heartbeat to `at`: a task that retries later sets the time of its retry, so the
    reconciler leaves the job to it meanwhile."""
    conversion_attempt_rows(conversion_id=conversion_id, attempt=attempt).filter(
        status__in=[Status.FETCHING, Status.PROCESSING]
    ).update(
        heartbeat_at=at
    )


def redelivery_limit_error(redeliveries: int) -> InternalError:
    """Why a job failed whose worker died every time it was tried (its source kills the worker, say)."""
    return InternalError(
        "Converting this file stopped the worker every time it was tried, so we gave up on it.",
        detail=f"redelivered {redeliveries} times",
    )


def too_many_redeliveries(open_rows, conversion_id, attempt) -> bool:
    """Count a redelivery; fail the job once they pass the limit (its source kills the worker every time)."""
    if open_rows.update(redeliveries=F("redeliveries") + 1):
        redelivery_observed(by="broker")
    redeliveries = open_rows.values_list("redeliveries", flat=True).first()
    if redeliveries is None or redeliveries <= settings.CONVERSION_MAX_REDELIVERIES:
        return False
    conversion_mark_failed(conversion_id=conversion_id, attempt=attempt, error=redelivery_limit_error(redeliveries))
    return True
