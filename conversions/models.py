"""A conversion job: one uploaded source, at most one MP3 (or one per chapter: its tracks), and the state of the work in
between."""

import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from . import filenames


def source_upload_to(instance: "Conversion", filename: str) -> str:
    # Stored names never contain the user's file name: it is kept in `original_filename` only.
    return filenames.source_name(instance.id)


def mp3_upload_to(instance: "Conversion", filename: str) -> str:
    return filenames.output_name(instance.id, instance.attempt)


class Conversion(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        FETCHING = "fetching"  # a URL job's source is being downloaded (the chain's fetch step)
        PROCESSING = "processing"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"
        # Its files were removed after the retention period (conversions/services/retention.py); the row stays.
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversions")
    original_filename = models.CharField(max_length=255)
    source = models.FileField(upload_to=source_upload_to, max_length=255, blank=True)
    source_size = models.BigIntegerField(default=0)
    # Where the source comes from when it was imported from a URL instead of uploaded; empty for uploads. Such a job
    # has no stored source until the fetch step has downloaded it.
    source_url = models.URLField(max_length=2048, blank=True, default="", db_default="")
    # The job's own webhook (an upload option): told when this job is done or failed, as the owner's endpoints are
    # (notifications/webhooks.py). Checked by the outbound guard at upload and again when sent.
    webhook_url = models.URLField(max_length=2048, blank=True, default="", db_default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    # Bumped by every retry; messages carry it, so a stale message from an earlier attempt changes nothing.
    attempt = models.PositiveIntegerField(default=1)
    # How often this attempt's message came back because the worker holding it died (or the broker restarted);
    # past CONVERSION_MAX_REDELIVERIES the job fails instead of crashing workers forever.
    redeliveries = models.PositiveSmallIntegerField(default=0)
    # 0-100, from ffmpeg's progress output; written at most about once a second.
    progress = models.PositiveSmallIntegerField(default=0)
    # Why the job failed (or that it was cancelled): one of mp3converter.errors.ErrorCode, and its sentence. Not
    # declared as choices, so that a new code needs no migration.
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    # ffmpeg's own words, for operators only (shown in the admin, never by the API).
    error_detail = models.TextField(blank=True)
    mp3 = models.FileField(upload_to=mp3_upload_to, max_length=255, blank=True)
    mp3_size = models.BigIntegerField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    options = models.JSONField(default=dict, blank=True)
    # Set when the job is claimed, queued again or retried, and written by the converter with its progress (at most
    # every few seconds); a processing job whose heartbeat is older than STALE_JOB_SECONDS lost its worker and is
    # queued again by the reconciler (conversions/services/reconcile.py).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Signed download links carry the generation they were made in; revoking them bumps it, so every earlier link
    # stops working at once (conversions/services/links.py). A database default too: rows inserted by the code of
    # the release before (during a rolling upgrade) get 0.
    links_generation = models.PositiveIntegerField(default=0, db_default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # Where a job may go from each state: the services only move a job along these edges.
    CANCELLABLE = (Status.QUEUED, Status.FETCHING, Status.PROCESSING)
    # Queued, fetching or processing: counted against the active-jobs limit, failed by conversion_mark_failed.
    ACTIVE = CANCELLABLE
    RETRYABLE = (Status.FAILED, Status.CANCELLED)
    FINISHED = (Status.DONE, Status.FAILED)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="conversion_owner_created"),
            # The retention sweep's reads: finished jobs of a status that ended before a cutoff.
            models.Index(fields=["status", "finished_at"], name="conversion_status_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.original_filename} ({self.status})"

    @property
    def mp3_filename(self) -> str:
        """The download name: the original name's stem with .mp3."""
        return filenames.download_name(self.original_filename)

    @property
    def is_split(self) -> bool:
        """Converted (or to be) into one MP3 per chapter: the job's download is then a ZIP of its tracks."""
        return self.options.get("split") == "chapters"

    @property
    def track_list(self) -> list["Track"]:
        """The tracks of a split job, in order (prefetched by the selectors); none, with no query, for any other."""
        return list(self.tracks.all()) if self.is_split else []

    @property
    def tracks_total(self) -> int:
        return len(self.tracks.all())  # prefetched by the selectors: no query per track


def track_upload_to(instance: "Track", filename: str) -> str:
    return filenames.track_name(instance.conversion_id, instance.conversion.attempt, instance.number)


class Track(models.Model):
    """One chapter's MP3 of a job converted with split=chapters. Written together with the job's move to done, by
    the attempt that made them; the files are stored under names of that attempt (filenames.track_name)."""

    conversion = models.ForeignKey(Conversion, on_delete=models.CASCADE, related_name="tracks")
    number = models.PositiveSmallIntegerField()  # from 1, in the order of the chapters
    title = models.CharField(max_length=255)
    start_seconds = models.FloatField()  # where the chapter starts in the source
    duration_seconds = models.FloatField()
    mp3 = models.FileField(upload_to=track_upload_to, max_length=255)
    size = models.BigIntegerField()

    class Meta:
        ordering = ["conversion", "number"]
        constraints = [
            # A redelivered message cannot add a job's tracks twice.
            models.UniqueConstraint(fields=["conversion", "number"], name="track_conversion_number"),
        ]

    def __str__(self) -> str:
        return f"{self.number}. {self.title}"

    @property
    def mp3_filename(self) -> str:
        return filenames.track_download_name(self.number, self.title, self.conversion.tracks_total)


class UploadRecord(models.Model):
    """One accepted upload, for the per-hour limit. Kept apart from the job, so deleting jobs does not reset the
    count; records older than the window are pruned as new ones are written."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["owner", "created_at"], name="upload_record_owner_created")]

    def __str__(self) -> str:
        return f"upload by {self.owner_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class ResumableUpload(models.Model):
    """A tus upload in progress (conversions/services/resumable.py): its declared length, the bytes received so far,
    and where the store keeps them. When the last byte arrives it becomes the conversion `conversion_id` names, an id
    chosen at creation so the store can write straight to that conversion's source name."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversion_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    length = models.BigIntegerField()
    offset = models.BigIntegerField(default=0)
    original_filename = models.CharField(max_length=255)
    # The output options as the conversion will store them (engine.OutputOptions.as_dict()).
    options = models.JSONField(default=dict, blank=True)
    # The conversion's own webhook, as the conversion will store it.
    webhook_url = models.URLField(max_length=2048, blank=True, default="", db_default="")
    # The store's own bookkeeping: a GridFS file id, an S3 multipart upload's id, parts and buffered tail.
    store_state = models.JSONField(default=dict, blank=True)
    # One request writes at a time: a PATCH claims the upload until this moment (renewed while it streams).
    locked_until = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"upload {self.id}: {self.offset} of {self.length} bytes"

    @property
    def is_complete(self) -> bool:
        return self.completed_at is not None


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` a user sent with an upload (conversions/services/idempotency.py): a digest of the request
    it came with and, once that request succeeded, its answer, which the same request with the same key gets again
    instead of a second job. Removed IDEMPOTENCY_KEY_HOURS after it was first sent."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)  # as the client sent it
    # The unique index is on the key's SHA-256: MySQL's collation would take `abc` and `ABC` (and `abc `) for one key.
    key_hash = models.CharField(max_length=64)
    # SHA-256 of the request's method, path and meaningful content (conversions/api/idempotency.py).
    fingerprint = models.CharField(max_length=64)
    # The answer; no status yet: the first request is still at work on it (its claim, taken at `claimed_at`).
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    body = models.BinaryField(default=b"", blank=True)
    claimed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            # One claim per user and key: of two requests with one key, only one can insert it.
            models.UniqueConstraint(fields=["owner", "key_hash"], name="idempotency_key_owner_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code or 'in progress'})"

    @property
    def is_answered(self) -> bool:
        return self.status_code is not None

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()
