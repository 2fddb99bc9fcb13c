"""Where uploaded sources and finished MP3s live: a local folder by default, GridFS when MONGODB_URI is set, an
S3-compatible bucket when S3_BUCKET is set. Setting both is refused at startup: files live in exactly one place.
And how long they are kept there (conversions/services/retention.py)."""

from django.core.exceptions import ImproperlyConfigured

from .env import VAR_DIR, env

MONGODB_URI = env.str("MONGODB_URI", default="")
S3_BUCKET = env.str("S3_BUCKET", default="")
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(VAR_DIR / "media"))
# Files are only ever served by the owner-checked download views, never from a public URL.
MEDIA_URL = None

if MONGODB_URI and S3_BUCKET:
    raise ImproperlyConfigured(
        "MONGODB_URI and S3_BUCKET are both set: choose one storage for uploads and MP3s (GridFS or S3), not both."
    )

if S3_BUCKET:
    _addressing_style = env.str("S3_ADDRESSING_STYLE", default="")
    if _addressing_style not in ("", "path", "virtual"):
        raise ImproperlyConfigured(f"S3_ADDRESSING_STYLE must be path or virtual, not {_addressing_style!r}.")
    # Credentials are boto3's: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment, or an instance/pod role.
    _default_storage = {
        "BACKEND": "conversions.storage.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env.str("S3_ENDPOINT_URL", default="") or None,  # MinIO, Ceph, R2, …; unset: AWS
            "region_name": env.str("S3_REGION", default="") or None,
            "addressing_style": _addressing_style or None,
            "location": env.str("S3_PREFIX", default="").strip("/"),
            # Private objects: no ACL is sent, so the bucket's (private) default applies.
            "default_acl": None,
            # Never replace a stored file: a taken name gets a suffix, as on the other storages.
            "file_overwrite": False,
        },
    }
elif MONGODB_URI:
    _default_storage = {"BACKEND": "conversions.storage.GridFSStorage", "OPTIONS": {"uri": MONGODB_URI}}
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(MEDIA_ROOT)}}

STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Retention (conversions/services/retention.py) -----------------------------------------------------------------
# Hours after a job ended that its uploaded source is removed; a failed or cancelled job can be retried until then, and
# then it expires.
SOURCE_RETENTION_HOURS = env.int("SOURCE_RETENTION_HOURS", default=24)
# Days after a job was done that its MP3 (or tracks) are removed and it expires; 0 keeps them as long as the job.
OUTPUT_RETENTION_DAYS = env.int("OUTPUT_RETENTION_DAYS", default=30)
# Stored files no row needs (left by a crash) are removed once they are this old: long past any store-then-save gap.
ORPHAN_GRACE_HOURS = env.int("ORPHAN_GRACE_HOURS", default=24)
# How often the workers' reconciler timer has the sweep run (once for all workers).
RETENTION_SWEEP_MINUTES = env.int("RETENTION_SWEEP_MINUTES", default=60)
for _name, _value, _least in (
    ("SOURCE_RETENTION_HOURS", SOURCE_RETENTION_HOURS, 1),
    ("OUTPUT_RETENTION_DAYS", OUTPUT_RETENTION_DAYS, 0),
    ("ORPHAN_GRACE_HOURS", ORPHAN_GRACE_HOURS, 1),
    ("RETENTION_SWEEP_MINUTES", RETENTION_SWEEP_MINUTES, 1),
):
    if _value < _least:
        raise ImproperlyConfigured(f"{_name} must be at least {_least}, not {_value}.")
