"""Where uploaded sources and finished MP3s live: a local folder by default, GridFS when MONGODB_URI is set, an
S3-compatible bucket when S3_BUCKET is set. Setting both is refused at startup: files live in exactly one place."""

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
