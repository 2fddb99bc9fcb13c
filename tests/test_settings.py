"""The settings package: production passes `check --deploy`, secrets are required, EMAIL_URL is parsed.

Each subprocess gets a clean environment (not the suite's), so it sees what a real deployment would.
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from mp3converter.settings import base

ROOT = Path(__file__).resolve().parent.parent


def production_env(tmp_path, **overrides) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "mp3converter.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "mp3converter.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        **overrides,
    }
    return {key: value for key, value in env.items() if value is not None}


def run(args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def settings_in(env, *names) -> dict:
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {list(names)!r}}}, default=str))"
    )
    result = run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr + result.stdout


def test_local_debug_run_needs_no_configuration(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DJANGO_DEBUG": "true"}
    result = run(["manage.py", "check"], env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_without_a_secret_key_fails_clearly(tmp_path):
    result = run(["-c", "import mp3converter.settings"], production_env(tmp_path, DJANGO_SECRET_KEY=""))
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off." in result.stderr
    assert HOW_TO in result.stderr


# The placeholders people are handed: docker/.env.example's, and a few others of the kind.
EXAMPLE_KEY = next(
    line.split("=", 1)[1] for line in (ROOT / "docker" / ".env.example").read_text().splitlines()
    if line.startswith("DJANGO_SECRET_KEY=")
)
HOW_TO = "Make one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "JWT_SIGNING_KEY"])
@pytest.mark.parametrize(
    "key, why",
    [
        (EXAMPLE_KEY, "contains the placeholder 'change-me'"),
        ("django-insecure-" + "k" * 10 + secrets.token_urlsafe(50), "contains the placeholder 'django-insecure'"),
        ("CHANGEME" + secrets.token_urlsafe(50), "contains the placeholder 'changeme'"),
        ("my-example-" + secrets.token_urlsafe(50), "contains the placeholder 'example'"),
        (secrets.token_urlsafe(50)[:49], "is 49 characters long, fewer than 50"),
    ],
    ids=["env-example", "django-insecure", "changeme", "example", "short"],
)
def test_with_debug_off_a_weak_key_stops_the_service_with_a_sentence(tmp_path, name, key, why):
    result = run(["manage.py", "check"], production_env(tmp_path, **{name: key}))
    assert result.returncode != 0
    assert (
        f"ImproperlyConfigured: {name} {why}: with DJANGO_DEBUG off the service needs a random key of at least 50 "
        f"characters. {HOW_TO}"
    ) in result.stderr


def test_with_debug_off_good_keys_start_and_sign_separately(tmp_path):
    django_key, jwt_key = secrets.token_urlsafe(50), secrets.token_urlsafe(50)
    env = production_env(tmp_path, DJANGO_SECRET_KEY=django_key, JWT_SIGNING_KEY=jwt_key)
    assert run(["manage.py", "check"], env).returncode == 0
    found = settings_in(env, "SECRET_KEY", "SIMPLE_JWT")
    assert (found["SECRET_KEY"], found["SIMPLE_JWT"]["SIGNING_KEY"]) == (django_key, jwt_key)
    # Unset (or empty), the JWTs are signed with the Django key, as before.
    for unset in (None, ""):
        found = settings_in(production_env(tmp_path, DJANGO_SECRET_KEY=django_key, JWT_SIGNING_KEY=unset), "SIMPLE_JWT")
        assert found["SIMPLE_JWT"]["SIGNING_KEY"] == django_key


def test_with_debug_on_a_placeholder_starts_but_check_deploy_names_it(tmp_path):
    """`make run` (DEBUG on) keeps working with any key; before deploying, check --deploy says that one is weak."""
    env = production_env(tmp_path, DJANGO_DEBUG="true", DJANGO_SECRET_KEY=EXAMPLE_KEY, JWT_SIGNING_KEY="change-me-jwt")
    assert run(["manage.py", "check"], env).returncode == 0
    result = run(["manage.py", "check", "--deploy"], env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "(mp3converter.E001) DJANGO_SECRET_KEY contains the placeholder 'change-me'." in output
    assert "(mp3converter.E001) JWT_SIGNING_KEY contains the placeholder 'change-me'." in output
    assert HOW_TO in output


def test_debug_without_a_secret_key_keeps_a_private_generated_key(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    monkeypatch.setattr(base, "VAR_DIR", tmp_path / "var")
    monkeypatch.setattr(base, "DEBUG", True)
    key = base._secret_key()
    assert len(key) >= 50
    assert base._secret_key() == key
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.read_text().strip() == key
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_secret_key_is_required_when_debug_is_off(monkeypatch):
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    monkeypatch.setattr(base, "DEBUG", False)
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        base._secret_key()


EMAIL_SETTINGS = ("EMAIL_BACKEND", "EMAIL_FILE_PATH", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER",
                  "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS", "EMAIL_USE_SSL")


def test_mail_goes_to_files_in_var_by_default(tmp_path):
    email = settings_in(production_env(tmp_path), *EMAIL_SETTINGS)
    assert email["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend"
    assert email["EMAIL_FILE_PATH"] == str(ROOT / "var" / "mail")


def test_smtp_with_starttls_from_email_url(tmp_path):
    env = production_env(tmp_path, EMAIL_URL="smtp+tls://mailer:s3cret@smtp.example.com:587")
    assert settings_in(env, *EMAIL_SETTINGS) == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_FILE_PATH": str(ROOT / "var" / "mail"),
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "mailer",
        "EMAIL_HOST_PASSWORD": "s3cret",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
    }


def test_files_go_to_a_local_folder_by_default(tmp_path):
    env = production_env(tmp_path, MEDIA_ROOT=str(tmp_path / "media"))
    assert settings_in(env, "STORAGES")["STORAGES"]["default"] == {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "media")},
    }


def test_mongodb_uri_chooses_gridfs(tmp_path):
    env = production_env(tmp_path, MONGODB_URI="mongodb://mongo:27017/mp3converter")
    assert settings_in(env, "STORAGES")["STORAGES"]["default"] == {
        "BACKEND": "conversions.storage.GridFSStorage",
        "OPTIONS": {"uri": "mongodb://mongo:27017/mp3converter"},
    }


def test_s3_bucket_chooses_s3_and_passes_its_options_through(tmp_path):
    env = production_env(
        tmp_path, S3_BUCKET="mp3converter-files", S3_ENDPOINT_URL="https://minio.example.com:9000",
        S3_REGION="eu-central-1", S3_ADDRESSING_STYLE="path", S3_PREFIX="/prod/",
    )
    assert settings_in(env, "STORAGES", "MEDIA_URL") == {
        "STORAGES": {
            "default": {
                "BACKEND": "conversions.storage.S3Storage",
                "OPTIONS": {
                    "bucket_name": "mp3converter-files",
                    "endpoint_url": "https://minio.example.com:9000",
                    "region_name": "eu-central-1",
                    "addressing_style": "path",
                    "location": "prod",
                    "default_acl": None,
                    "file_overwrite": False,
                },
            },
            "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
        },
        "MEDIA_URL": None,
    }


def test_s3_needs_only_the_bucket_and_takes_credentials_from_boto3(tmp_path):
    env = production_env(
        tmp_path, S3_BUCKET="mp3converter-files", AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="s3cret"
    )
    code = (
        "import django; django.setup(); from django.core.files.storage import storages; s = storages['default']; "
        "import json; client = s.connection.meta.client; credentials = client._request_signer._credentials; "
        "print(json.dumps([type(s).__name__, s.bucket_name, s.location, s.file_overwrite, s.default_acl, "
        "client.meta.endpoint_url, credentials.access_key, credentials.secret_key]))"
    )
    result = run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    # No endpoint: AWS itself; the key pair is the one boto3 found in the environment.
    assert json.loads(result.stdout) == [
        "S3Storage", "mp3converter-files", "", False, None, "https://s3.amazonaws.com", "AKIAEXAMPLE", "s3cret"
    ]


def test_gridfs_and_s3_together_are_refused_at_startup(tmp_path):
    env = production_env(tmp_path, MONGODB_URI="mongodb://mongo:27017/mp3converter", S3_BUCKET="mp3converter-files")
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert (
        "ImproperlyConfigured: MONGODB_URI and S3_BUCKET are both set: choose one storage for uploads and MP3s "
        "(GridFS or S3), not both." in result.stderr
    )


def test_an_unknown_s3_addressing_style_is_refused(tmp_path):
    result = run(["manage.py", "check"], production_env(tmp_path, S3_BUCKET="files", S3_ADDRESSING_STYLE="dns"))
    assert result.returncode != 0
    assert "ImproperlyConfigured: S3_ADDRESSING_STYLE must be path or virtual, not 'dns'." in result.stderr


def test_download_links_work_for_a_week_unless_configured(tmp_path):
    assert settings_in(production_env(tmp_path), "DOWNLOAD_LINK_DAYS") == {"DOWNLOAD_LINK_DAYS": 7}
    assert settings_in(production_env(tmp_path, DOWNLOAD_LINK_DAYS="30"), "DOWNLOAD_LINK_DAYS") == {
        "DOWNLOAD_LINK_DAYS": 30
    }
    result = run(["manage.py", "check"], production_env(tmp_path, DOWNLOAD_LINK_DAYS="0"))
    assert result.returncode != 0
    assert "ImproperlyConfigured: DOWNLOAD_LINK_DAYS must be at least 1" in result.stderr


def test_files_are_kept_for_a_day_and_mp3s_for_thirty_unless_configured(tmp_path):
    names = ("SOURCE_RETENTION_HOURS", "OUTPUT_RETENTION_DAYS", "ORPHAN_GRACE_HOURS", "RETENTION_SWEEP_MINUTES")
    assert settings_in(production_env(tmp_path), *names) == dict(zip(names, (24, 30, 24, 60), strict=True))
    assert settings_in(production_env(tmp_path, OUTPUT_RETENTION_DAYS="0"), "OUTPUT_RETENTION_DAYS") == {
        "OUTPUT_RETENTION_DAYS": 0  # MP3s kept as long as their job
    }
    result = run(["manage.py", "check"], production_env(tmp_path, SOURCE_RETENTION_HOURS="0"))
    assert result.returncode != 0
    assert "ImproperlyConfigured: SOURCE_RETENTION_HOURS must be at least 1, not 0." in result.stderr


LOG_A_LINE = ["manage.py", "shell", "-c", "import logging; logging.getLogger('mp3converter.probe').warning('hello')"]


def test_log_lines_are_text_for_people_by_default(tmp_path):
    result = run(LOG_A_LINE, production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert " level=WARNING logger=mp3converter.probe request=- user=- job=- pid=" in result.stderr
    assert result.stderr.rstrip().endswith(" hello")


def test_log_format_json_makes_a_manage_py_commands_lines_json(tmp_path):
    result = run(LOG_A_LINE, production_env(tmp_path, LOG_FORMAT="json"))
    assert result.returncode == 0, result.stderr
    [line] = [json.loads(line) for line in result.stderr.splitlines()]
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", "mp3converter.probe", "hello")


def test_the_migrate_role_writes_only_json_lines_with_log_format_json(tmp_path):
    # manage.py migrate prints its progress as plain text, not through logging: the role runs it quietly.
    env = production_env(tmp_path, LOG_FORMAT="json", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run([str(ROOT / "docker" / "bin" / "migrate")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (result.stdout + result.stderr).splitlines():
        json.loads(line)
    text = run(["manage.py", "migrate", "--noinput"], production_env(tmp_path))
    assert "No migrations to apply." in text.stdout  # the database was migrated, quietly


def test_an_unknown_log_format_is_refused(tmp_path):
    result = run(["manage.py", "check"], production_env(tmp_path, LOG_FORMAT="yaml"))
    assert result.returncode != 0
    assert "ImproperlyConfigured: LOG_FORMAT must be one of text, json, not 'yaml'." in result.stderr


EXAMPLE_METRICS_TOKEN = next(
    line.split("=", 1)[1] for line in (ROOT / "docker" / ".env.example").read_text().splitlines()
    if line.startswith("METRICS_TOKEN=")
)


@pytest.mark.parametrize(
    "token, why",
    [
        (EXAMPLE_METRICS_TOKEN, "contains the placeholder 'change-me'"),
        ("s3cr3t-t0ken", "is 12 characters long, fewer than 50"),
    ],
    ids=["env-example", "short"],
)
def test_with_debug_off_a_weak_metrics_token_stops_the_service(tmp_path, token, why):
    result = run(["manage.py", "check"], production_env(tmp_path, METRICS_TOKEN=token))
    assert result.returncode != 0
    assert f"ImproperlyConfigured: METRICS_TOKEN {why}: with DJANGO_DEBUG off" in result.stderr
    # Unset is no error: the metrics are off (404) until a token is set.
    found = settings_in(production_env(tmp_path), "METRICS_TOKEN", "WORKER_METRICS_PORT")
    assert found == {"METRICS_TOKEN": "", "WORKER_METRICS_PORT": 0}


def test_a_worker_metrics_port_that_is_no_port_is_refused(tmp_path):
    result = run(["manage.py", "check"], production_env(tmp_path, WORKER_METRICS_PORT="70000"))
    assert result.returncode != 0
    assert "ImproperlyConfigured: WORKER_METRICS_PORT must be a port number (0: none), not 70000." in result.stderr


def test_a_heartbeat_that_never_beats_is_refused(tmp_path):
    result = run(["manage.py", "check"], production_env(tmp_path, WORKER_HEARTBEAT_SECONDS="0"))
    assert result.returncode != 0
    assert "ImproperlyConfigured: WORKER_HEARTBEAT_SECONDS must be more than 0, not 0." in result.stderr
