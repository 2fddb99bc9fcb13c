"""Core Django, DRF and JWT settings."""

import ipaddress
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

from mp3converter.checks import key_weakness, weak_key_message

from .env import BASE_DIR, VAR_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=False)


def _strong(name: str, key: str) -> str:
    """With DEBUG off a placeholder or short key stops the service here: it would sign sessions and tokens."""
    if not DEBUG and (weakness := key_weakness(key)):
        raise ImproperlyConfigured(weak_key_message(name, weakness))
    return key


def _secret_key() -> str:
    key = env("DJANGO_SECRET_KEY", default="")
    if key:
        return _strong("DJANGO_SECRET_KEY", key)
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off. "
            "Make one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    # A local run gets a random key kept in a git-ignored file, so sessions survive restarts.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(get_random_secret_key())
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
# A key of its own for the JWTs (Compose and k8s set one), so the Django key alone cannot forge an API token.
JWT_SIGNING_KEY = env.str("JWT_SIGNING_KEY", default="")
JWT_SIGNING_KEY = _strong("JWT_SIGNING_KEY", JWT_SIGNING_KEY) if JWT_SIGNING_KEY else SECRET_KEY
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    # Refresh tokens rotate and the used one is blacklisted; logout and a password change blacklist too.
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "accounts",
    "conversions",
    "notifications",
]

MIDDLEWARE = [
    # Probes first: the kubelet calls them by pod IP over plain HTTP (see mp3converter/health.py), and they log nothing.
    "mp3converter.health.ProbeMiddleware",
    # Times every other request; answers /metrics before host validation, as for the probes (mp3converter/metrics/).
    "mp3converter.metrics.http.MetricsMiddleware",
    # Every other request gets its id before anything logs: in the answer's X-Request-ID and on each line logged for it.
    "mp3converter.requestid.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every answer (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Private answers are never cached (after WhiteNoise: static files keep their own headers).
    "mp3converter.nostore.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # A sign-in page past the failed-attempt limit answers 429 (accounts/throttling.py).
    "accounts.throttling.SignInThrottleMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mp3converter.urls"
WSGI_APPLICATION = "mp3converter.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The web app's shared layout (base.html); each app keeps its own pages.
        "DIRS": [BASE_DIR / "mp3converter" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "conversions.pages.context.web_app",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"charset": "utf8mb4", "init_command": "SET sql_mode='STRICT_TRANS_TABLES'", "connect_timeout": 5}
    )
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # `make run`'s database. Write-ahead logging: the job-status polls of the web process never block the convert
    # worker's progress writes (nor they the polls), which the default rollback journal serialises.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
# Django's model backend behind the sign-in throttle: past THROTTLE_LOGIN failures no password is checked, on any
# door (accounts/throttling.py).
AUTHENTICATION_BACKENDS = ["accounts.throttling.SignInThrottleBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The web app's pages (accounts/pages, conversions/pages).
LOGIN_URL = "account:login"
LOGIN_REDIRECT_URL = "pages:home"
LOGOUT_REDIRECT_URL = "pages:home"
# Closing registration leaves account creation to admins (`manage.py createsuperuser`, Django admin).
REGISTRATION_OPEN = env.bool("REGISTRATION_OPEN", default=True)
# A new account confirms its address through the emailed link before it may upload (403 email_not_verified).
REQUIRE_EMAIL_VERIFICATION = env.bool("REQUIRE_EMAIL_VERIFICATION", default=True)
# Days the link in the verification email works.
EMAIL_VERIFICATION_DAYS = env.int("EMAIL_VERIFICATION_DAYS", default=3)
# Failed sign-ins per account and per client address (every door that takes a password), and registrations per
# address and per email address: `count/period`, period s, min, hour or day.
THROTTLE_LOGIN = env.str("THROTTLE_LOGIN", default="10/min")
THROTTLE_REGISTER = env.str("THROTTLE_REGISTER", default="5/min")
# Proxies in front of the web process that append to X-Forwarded-For (the ingress: 1). 0 ignores the header, since
# a client can write anything in it (mp3converter/clientip.py).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "mp3converter" / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "static"))

# The throttle counts live here, shared by every process and pod: the database by default (its table is made by
# `migrate`, accounts/migrations/0003), or e.g. CACHE_URL=redis://host:6379/0.
CACHES = {"default": env.cache_url("CACHE_URL", default="dbcache://django_cache")}

# --- Uploads -------------------------------------------------------------------------------------------------
MAX_UPLOAD_MB = env.int("MAX_UPLOAD_MB", default=2048)
# Every upload streams to a temporary file (never into memory) through a handler that enforces MAX_UPLOAD_MB.
FILE_UPLOAD_HANDLERS = ["conversions.uploads.LimitedTemporaryFileUploadHandler"]
FILE_UPLOAD_TEMP_DIR = env.str("FILE_UPLOAD_TEMP_DIR", default=None)
FILE_UPLOAD_PERMISSIONS = 0o640
# Resumable (tus) uploads, /api/uploads/ (conversions/api/tus.py). An unfinished upload expires after this many hours
# and its bytes are removed by the reconciler's sweep.
UPLOAD_EXPIRY_HOURS = env.int("UPLOAD_EXPIRY_HOURS", default=24)
# Largest body one PATCH may carry: keep it under the proxy's body cap (Cloudflare's is 100 MB).
TUS_MAX_CHUNK_MB = env.int("TUS_MAX_CHUNK_MB", default=64)
if not 1 <= TUS_MAX_CHUNK_MB < 100:
    raise ImproperlyConfigured("TUS_MAX_CHUNK_MB must be between 1 and 99: proxies commonly cap a body at 100 MB.")
# The convert page sends files larger than this with tus, in chunks, resumable after a dropped connection or a reload.
TUS_WEB_THRESHOLD_MB = env.int("TUS_WEB_THRESHOLD_MB", default=50)
# Hours an upload's Idempotency-Key is kept: the same request with it gets the first answer again instead of a second
# job (conversions/api/idempotency.py); the reconciler's runs remove older keys.
IDEMPOTENCY_KEY_HOURS = env.int("IDEMPOTENCY_KEY_HOURS", default=24)
if IDEMPOTENCY_KEY_HOURS < 1:
    raise ImproperlyConfigured("IDEMPOTENCY_KEY_HOURS must be at least 1: a key forgotten at once protects nothing.")

# --- Import from a URL (conversions/services/fetching.py; the guard: mp3converter/outbound.py) -------------------
# Networks the service may reach although they are loopback, private, link-local, ... (comma-separated CIDRs): the
# one exception to the outbound guard, for URL imports and webhooks. Empty: only public addresses.
OUTBOUND_ALLOWED_NETWORKS = env.list("OUTBOUND_ALLOWED_NETWORKS", default=[])
for _network in OUTBOUND_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"OUTBOUND_ALLOWED_NETWORKS: {_network!r} is not a network (a CIDR such as 10.0.0.0/8).") from _exc
# Seconds to open a connection to the remote server, and to wait for each read (a server that stalls fails the job).
FETCH_CONNECT_TIMEOUT = env.float("FETCH_CONNECT_TIMEOUT", default=10)
FETCH_READ_TIMEOUT = env.float("FETCH_READ_TIMEOUT", default=30)

# --- Webhooks (notifications/webhooks.py, sent by the notify worker: notifications/webhook_sending.py) ---------
# Seconds one delivery may take, connecting and waiting for the answer's status line together.
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=10)
# Seconds between a failed try and the next, one entry per retry: the first within 30 s, the whole over 24 hours
# (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 27.5 h, as Standard Webhooks senders do). After the last, the
# delivery is given up. Tests set short ones.
WEBHOOK_RETRY_SCHEDULE = env.list("WEBHOOK_RETRY_SCHEDULE", cast=float, default=[5, 300, 1800, 7200, 18000, 36000, 36000])
if not WEBHOOK_RETRY_SCHEDULE or any(seconds <= 0 for seconds in WEBHOOK_RETRY_SCHEDULE):
    raise ImproperlyConfigured("WEBHOOK_RETRY_SCHEDULE must list one or more positive numbers of seconds.")
# An endpoint whose deliveries have failed without a success for this long is disabled, and its owner emailed.
WEBHOOK_DISABLE_AFTER_HOURS = env.float("WEBHOOK_DISABLE_AFTER_HOURS", default=72)

# --- Conversions ---------------------------------------------------------------------------------------------
# Seconds a single ffmpeg run may take before the job fails with code "timeout" (Celery's soft limit).
CONVERSION_SOFT_TIME_LIMIT = env.int("CONVERSION_SOFT_TIME_LIMIT", default=3600)
CONVERSION_HARD_TIME_LIMIT = env.int("CONVERSION_HARD_TIME_LIMIT", default=CONVERSION_SOFT_TIME_LIMIT + 120)
# A message that keeps coming back because its worker died (a crash, an OOM kill) fails the job after this many.
CONVERSION_MAX_REDELIVERIES = env.int("CONVERSION_MAX_REDELIVERIES", default=3)
# Seconds the upload-time probe may take: the headers, and measuring the audio when they give no duration.
PROBE_TIMEOUT = env.int("PROBE_TIMEOUT", default=30)
# Longest audio accepted: refused at upload (422 too_long) and enforced again while converting (headers can lie).
MAX_DURATION_MINUTES = env.int("MAX_DURATION_MINUTES", default=360)
# Largest MP3 a conversion may write before it is stopped (output_too_large). 360 minutes at 320 kbps, MP3's highest
# bitrate, is about 825 MiB, so the default leaves room for that plus tags and a cover.
MAX_OUTPUT_MB = env.int("MAX_OUTPUT_MB", default=1024)
# Days a signed download link works (the one in the "ready" email, or one made with POST .../link/).
DOWNLOAD_LINK_DAYS = env.int("DOWNLOAD_LINK_DAYS", default=7)
if DOWNLOAD_LINK_DAYS < 1:
    raise ImproperlyConfigured("DOWNLOAD_LINK_DAYS must be at least 1: a link that expires at once is no link.")
# Some deployments of the classic API allow only staff to upload and download.
CLASSIC_API_STAFF_ONLY = env.bool("CLASSIC_API_STAFF_ONLY", default=False)


# --- Limits --------------------------------------------------------------------------------------------------
def _limit(name: str, default: int) -> int | None:
    """A per-user limit's default: a whole number (0 allows nothing), or `unlimited` (no limit)."""
    value = env.str(name, default="").strip().lower()
    if value == "unlimited":
        return None
    try:
        limit = int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number or 'unlimited', not {value!r}.") from None
    if limit < 0:
        raise ImproperlyConfigured(f"{name} must not be negative.")
    return limit


# What one account may cost (staff are exempt; the admin can set other limits per user, conversions/services/quotas.py).
QUOTA_ACTIVE_JOBS = _limit("QUOTA_ACTIVE_JOBS", 3)  # jobs queued, fetching or processing at once
QUOTA_UPLOADS_PER_HOUR = _limit("QUOTA_UPLOADS_PER_HOUR", 30)  # accepted uploads in any rolling hour
QUOTA_STORAGE_MB = _limit("QUOTA_STORAGE_MB", 10240)  # stored sources and MP3s together

# --- REST API ------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Personal API keys (Bearer mp3k_…); first, since the JWT class would refuse one as a malformed token.
        "accounts.authentication.ApiKeyAuthentication",
        # SimpleJWT's, refusing tokens a password change revoked.
        "accounts.authentication.RevocableJWTAuthentication",
        # Lets a signed-in admin use the browsable API.
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's two, the HTML one allowed the inline styles its templates use (mp3converter/api.py).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "mp3converter.api.BrowsableAPIRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"login": THROTTLE_LOGIN, "register": THROTTLE_REGISTER},
    # Agrees with mp3converter/clientip.py, which the project's throttles use (accounts/throttling.py).
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "EXCEPTION_HANDLER": "mp3converter.api.exception_handler",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=30)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "ALGORITHM": "HS256",
    "UPDATE_LAST_LOGIN": True,
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "mp3converter API",
    "DESCRIPTION": "Upload a video, get an MP3 back. Jobs are converted asynchronously by Celery workers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs are public; a stale token sent along must not turn them into a 401.
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The webhook events appear in several serializers: one enum in the schema.
    "ENUM_NAME_OVERRIDES": {"WebhookEventEnum": "notifications.models.Events"},
}

# --- Security (all on unless DEBUG; `manage.py check --deploy` passes with production variables) --------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False) else None
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
# The pages' script reads the CSRF token from the form it sends, never from the cookie.
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Scripts and styles come from this site's own files only: no inline script, no inline style, no other origin.
# The Swagger UI page adds inline styles for itself (mp3converter/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "media-src": ["'self'"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
