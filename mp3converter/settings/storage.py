"""Where uploaded sources and finished MP3s live: GridFS when MONGODB_URI is set, a local folder otherwise."""

from .env import VAR_DIR, env

MONGODB_URI = env.str("MONGODB_URI", default="")
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(VAR_DIR / "media"))
# Files are only ever served by the owner-checked download views, never from a public URL.
MEDIA_URL = None

if MONGODB_URI:
    _default_storage = {"BACKEND": "conversions.storage.GridFSStorage", "OPTIONS": {"uri": MONGODB_URI}}
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(MEDIA_ROOT)}}

STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
