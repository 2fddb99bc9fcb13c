"""docker/compose.yaml and docker/.env.example, checked without a Docker engine.

The Compose file is valid against the Compose Specification's schema; beyond the schema: one image for every app role,
dependencies that exist and wait for health, a healthcheck on every long-running service, the broker and the convert
service outlasting the longest conversion, env files (docker/app.env, the settings; docker/.env.example, the secrets)
that document every variable with safe values, and
settings that pass `manage.py check --deploy` with exactly the web container's environment, less only the documented
relaxations for plain HTTP on localhost.
"""

import json
import re
import subprocess
import sys
from importlib.resources import files
from urllib.parse import urlsplit

import jsonschema
import pytest

from tests.deploy.readers import (
    APP_ENV,
    APP_SERVICES,
    COMPOSE_FILE,
    DOCKER,
    DOCKERFILE,
    ENV_EXAMPLE,
    NO_LITERAL_DEFAULT,
    ROOT,
    compose,
    compose_raw,
    compose_variables,
    duration_seconds,
    env_file,
    env_text,
    image_env,
    image_path,
    script_variables,
    service_environment,
    settings_variables,
    without_env_file_lookup,
)

# The Compose Specification's schema as check-jsonschema vendors it (pinned in tests/requirements.txt).
SCHEMA = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
DATA_SERVICES = {
    "mysql": ("mysql:8.4", "/var/lib/mysql"),
    "rabbitmq": ("rabbitmq:4.1-management", "/var/lib/rabbitmq"),
    "mongo": ("mongo:7.0", "/data/db"),
    "mailpit": ("axllent/mailpit:v1.29", None),
}
# Plain HTTP on 127.0.0.1: no redirect to HTTPS, cookies not marked Secure (the browser would not send them back).
LOCAL_HTTP_RELAXATIONS = {
    "DJANGO_SECURE_SSL_REDIRECT": "security.W008",
    "DJANGO_SESSION_COOKIE_SECURE": "security.W012",
    "DJANGO_CSRF_COOKIE_SECURE": "security.W016",
}
# Read by libraries rather than by the settings: boto3 takes its credentials from these (the S3 storage).
LIBRARY_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
S3_VARIABLES = {"S3_BUCKET", "S3_ENDPOINT_URL", "S3_REGION", "S3_ADDRESSING_STYLE", "S3_PREFIX"} | LIBRARY_VARIABLES
SECRET_NAME = re.compile(r"SECRET|PASSWORD|_PASS$|_KEY$|_KEY_ID$|TOKEN|AUTH")
PLACEHOLDER = "change-me"


def services() -> dict:
    return compose()["services"]


def documented() -> set[str]:
    """Every variable the two env files list: the settings (docker/app.env) and the secrets (docker/.env.example)."""
    return env_file(APP_ENV).listed | env_file().listed


def commented() -> dict[str, str]:
    return {**env_file(APP_ENV).commented, **env_file().commented}


def compose_scripts() -> list:
    """The docker/bin scripts Compose runs: the role entrypoints and the healthcheck probe."""
    paths = set()
    for config in services().values():
        for part in (config.get("command") or []) + (config.get("healthcheck", {}).get("test") or []):
            if part.startswith("/app/docker/bin/"):
                paths.add(image_path(part))
    return sorted(paths)


def settings_under(env: dict[str, str], *names: str) -> dict:
    code = without_env_file_lookup() + (
        "import django, json; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {list(names)!r}}}, default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "mp3converter.settings"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- The Compose file ------------------------------------------------------------------------------------------------
def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def test_compose_file_is_valid_against_the_compose_specification():
    validator = compose_validator()
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(compose())
    ]
    assert errors == []


def test_the_schema_check_rejects_what_compose_would_reject():
    validator = compose_validator()
    misspelt = compose()
    misspelt["services"]["web"]["healtcheck"] = misspelt["services"]["web"].pop("healthcheck")
    assert any("healtcheck" in str(error) for error in validator.iter_errors(misspelt)), "a misspelt key must fail"
    unknown = compose()
    unknown["services"]["web"]["depends_on"]["mysql"]["condition"] = "service_ready"
    assert any("service_ready" in str(error) for error in validator.iter_errors(unknown)), "an unknown condition must fail"


def test_every_app_service_runs_the_one_image_with_one_configuration():
    built = {name for name, config in services().items() if "build" in config}
    assert built == set(APP_SERVICES)
    configs = [services()[name] for name in APP_SERVICES]
    assert len({config["image"] for config in configs}) == 1
    for name, role in APP_SERVICES.items():
        config = services()[name]
        assert config["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        build = config["build"]
        assert (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert config["env_file"] == "app.env"
        # Nothing writes outside /tmp, as on Kubernetes.
        assert config["read_only"] is True and config["tmpfs"] == ["/tmp"]
        assert config["command"] == [f"/app/docker/bin/{role}"]
        assert image_path(config["command"][0]).is_file()
    # Only the app services get the settings, and no service gets docker/.env (the secrets) whole.
    assert {name for name, config in services().items() if "env_file" in config} == set(APP_SERVICES)
    assert all(config.get("env_file") != ".env" for config in services().values())


def test_dependencies_exist_and_wait_until_they_are_ready():
    for name, config in services().items():
        for target, dependency in config.get("depends_on", {}).items():
            assert target in services(), f"{name} depends on {target}, which is not a service"
            if target == "migrate":
                assert dependency["condition"] == "service_completed_successfully"
            else:
                assert dependency["condition"] == "service_healthy", f"{name} → {target}"
                assert "healthcheck" in services()[target], f"{name} waits for the health of {target}: none is checked"
    assert set(services()["migrate"]["depends_on"]) == {"mysql"}
    for name in ("web", "convert", "notify"):
        assert "migrate" in services()[name]["depends_on"], f"{name} must not run before the schema is migrated"


def test_every_long_running_service_has_a_healthcheck():
    for name, config in services().items():
        if name == "migrate":
            assert config["restart"] == "no"  # the one-shot
            continue
        healthcheck = config.get("healthcheck")
        assert healthcheck, f"{name} has no healthcheck"
        assert not healthcheck.get("disable") and healthcheck["test"][0] in ("CMD", "CMD-SHELL")


def test_web_healthcheck_gets_healthz_with_python():
    test = services()["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "urlopen('http://127.0.0.1:8000/healthz'" in test[3]


def test_worker_healthchecks_use_worker_health():
    for name in ("convert", "notify"):
        assert services()[name]["healthcheck"]["test"] == ["CMD", "/app/docker/bin/worker-health", "live"]


def test_data_services_use_pinned_images_and_keep_data_in_named_volumes():
    config = compose()
    for name, (image, data_path) in DATA_SERVICES.items():
        assert services()[name]["image"] == image
        if data_path:
            volume = f"{name}-data"
            assert f"{volume}:{data_path}" in services()[name]["volumes"]
            assert volume in config["volumes"]


def test_only_the_user_interfaces_are_published_and_only_on_loopback():
    published = {}
    for name, config in services().items():
        for port in config.get("ports", []):
            host_ip, host_port, container_port = port.split(":")
            published[name] = (host_ip, int(host_port), int(container_port))
    assert published == {
        "web": ("127.0.0.1", 8000, 8000),
        "flower": ("127.0.0.1", 5555, 5555),
        "rabbitmq": ("127.0.0.1", 15672, 15672),
        "mailpit": ("127.0.0.1", 8025, 8025),
    }


def hard_time_limit() -> int:
    return settings_under(service_environment("convert"), "CONVERSION_HARD_TIME_LIMIT")["CONVERSION_HARD_TIME_LIMIT"]


def test_broker_consumer_timeout_outlasts_the_hard_time_limit():
    mounts = dict(volume.split(":", 1) for volume in services()["rabbitmq"]["volumes"])
    assert mounts["./rabbitmq.conf"] == "/etc/rabbitmq/conf.d/20-mp3converter.conf:ro"
    config = {}
    for line in (DOCKER / "rabbitmq.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            config[key.strip()] = value.strip()
    assert int(config["consumer_timeout"]) > hard_time_limit() * 1000  # milliseconds


def test_convert_stop_grace_period_outlasts_the_hard_time_limit():
    # SIGTERM is a warm shutdown: the worker waits for the conversion it is running, up to the hard time limit.
    assert duration_seconds(services()["convert"]["stop_grace_period"]) > hard_time_limit()


def test_web_stop_grace_period_outlasts_gunicorns_graceful_timeout():
    graceful = script_variables([ROOT / "docker" / "bin" / "web"])["WEB_GRACEFUL_TIMEOUT"].default
    assert duration_seconds(services()["web"]["stop_grace_period"]) > int(graceful)


# --- The env example -------------------------------------------------------------------------------------------------
def test_env_example_lists_every_variable_the_settings_read():
    listed = documented()
    missing = {name: variable.where for name, variable in settings_variables().items() if name not in listed}
    assert missing == {}, "document these in docker/app.env (or, secrets, in docker/.env.example)"


def test_env_example_lists_every_variable_the_entrypoints_and_compose_read():
    missing = set(script_variables(compose_scripts())) - documented()
    assert missing == set(), "document these in docker/app.env"
    # Compose fills these in from docker/.env, so they must be set, not just documented.
    assert compose_variables(compose_raw()) - set(env_file().active) == set()


def test_env_example_lists_nothing_that_nobody_reads():
    read = set(settings_variables()) | set(script_variables(compose_scripts())) | compose_variables(compose_raw())
    assert documented() - read - LIBRARY_VARIABLES == set()


def test_env_example_comments_show_the_defaults_that_apply():
    defaults = {name: variable.default for name, variable in script_variables(compose_scripts()).items()}
    defaults.update({name: variable.default for name, variable in settings_variables().items()})
    # In the container the image's ENV comes first; what compose.yaml sets is not a default at all.
    defaults.update(image_env())
    set_by_compose = set().union(*(services()[name].get("environment", {}) for name in APP_SERVICES))
    checked = 0
    for name, documented in commented().items():
        default = defaults.get(name, NO_LITERAL_DEFAULT)
        if name in set_by_compose or default is NO_LITERAL_DEFAULT or default is None:
            continue
        assert documented == env_text(default), f"{name}: the example shows {documented!r}, the default is {default!r}"
        checked += 1
    assert checked >= 30


def test_env_example_comments_show_the_computed_defaults_the_settings_arrive_at():
    computed = {  # variable → the setting it ends up in, where the default is worked out rather than written down
        "CONVERSION_HARD_TIME_LIMIT": "CONVERSION_HARD_TIME_LIMIT",
        "DJANGO_SECURE_HSTS_SECONDS": "SECURE_HSTS_SECONDS",
        "MEDIA_ROOT": "MEDIA_ROOT",
        "EMAIL_FILE_PATH": "EMAIL_FILE_PATH",
    }
    settings = settings_under(service_environment("web"), *computed.values())
    for variable, setting in computed.items():
        value = commented()[variable]
        # Paths are documented as the image has them (/app is the checkout).
        expected = str(image_path(value)) if value.startswith("/app/") else value
        assert str(settings[setting]) == expected, variable


def test_env_example_holds_only_placeholders_for_secrets():
    example = env_file()
    secret_names = {name for name in example.listed if SECRET_NAME.search(name)}
    assert {
        "DJANGO_SECRET_KEY", "JWT_SIGNING_KEY", "MYSQL_PASSWORD", "RABBITMQ_APP_PASSWORD",
        "RABBITMQ_MONITORING_PASSWORD", "MONGO_APP_PASSWORD", "MONGO_ROOT_PASSWORD", "FLOWER_BASIC_AUTH",
    } <= secret_names
    for name in secret_names:
        value = {**example.commented, **example.active}[name]
        assert value == "" or PLACEHOLDER in value, f"{name} must be a {PLACEHOLDER}-... placeholder, not {value!r}"
    # Nor a password tucked into a URL.
    for name, value in {**example.commented, **example.active}.items():
        credentials = re.match(r"^\w[\w+.-]*://([^/@]+)@", value)
        assert not credentials or PLACEHOLDER in credentials.group(1), name


def test_the_settings_file_holds_no_secret():
    """docker/app.env is tracked and goes to every app container whole: nothing secret belongs there."""
    settings = env_file(APP_ENV)
    assert {name for name in settings.listed if SECRET_NAME.search(name)} == set()
    assert not any(re.match(r"^\w[\w+.-]*://[^/@]+@", value) for value in settings.active.values())
    assert set(settings.active).isdisjoint(env_file().listed), "a variable belongs in one of the two files"


@pytest.mark.parametrize("path", [ENV_EXAMPLE, APP_ENV], ids=["env-example", "app-env"])
def test_env_files_values_need_no_quoting(path):
    # Compose would interpolate a "$", and a quote or a space around "=" changes the value it passes on.
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert name == name.strip() and value == value.strip(), line
            assert not re.search(r"[$'\"\s]", value), line


def test_s3_is_documented_but_off_while_gridfs_is_on():
    assert S3_VARIABLES <= set(commented())
    assert S3_VARIABLES.isdisjoint(env_file(APP_ENV).active) and S3_VARIABLES.isdisjoint(env_file().active)
    assert service_environment("web")["MONGODB_URI"].startswith("mongodb://")


def test_docker_env_is_git_ignored_and_the_example_and_settings_are_not():
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=ROOT)
    example = subprocess.run(["git", "check-ignore", "-q", "docker/.env.example"], cwd=ROOT)
    settings = subprocess.run(["git", "check-ignore", "-q", "docker/app.env"], cwd=ROOT)
    assert (ignored.returncode, example.returncode, settings.returncode) == (0, 1, 1)


# --- The settings, in the web container's environment ----------------------------------------------------------------
def test_stack_environment_points_at_the_stack_services():
    env = service_environment("web")
    assert env["DATABASE_URL"].startswith("mysql://") and "@mysql:3306/" in env["DATABASE_URL"]
    assert env["CELERY_BROKER_URL"].startswith("amqp://") and "@rabbitmq:5672/" in env["CELERY_BROKER_URL"]
    # The application user, never root: the root password is only in the mongo service.
    mongo = urlsplit(env["MONGODB_URI"])
    assert (mongo.hostname, mongo.port, mongo.username) == ("mongo", 27017, env_file().active["MONGO_APP_USER"])
    assert mongo.path == "/" + env_file().active["MONGO_DATABASE"]
    assert "EMAIL_URL" not in env  # web queues email; the notify worker sends it
    assert {"localhost", "127.0.0.1"} <= set(env["ALLOWED_HOSTS"].split(","))
    assert all(env[name] == "false" for name in LOCAL_HTTP_RELAXATIONS)
    settings = settings_under(env, "DEBUG", "SECURE_HSTS_SECONDS", "STORAGES", "CELERY_BROKER_URL")
    assert settings["DEBUG"] is False
    assert settings["SECURE_HSTS_SECONDS"] > 0
    assert settings["STORAGES"]["default"]["BACKEND"] == "conversions.storage.GridFSStorage"
    notify = service_environment("notify")
    assert notify["EMAIL_URL"] == "smtp://mailpit:1025"
    assert settings_under(notify, "EMAIL_BACKEND")["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"


def deploy_check(env: dict[str, str]) -> set[str]:
    """The ids `manage.py check --deploy` reports (it must not fail outright)."""
    code = without_env_file_lookup() + (
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "mp3converter.settings"},
        capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return set(re.findall(r"\((\w+\.[CEWI]\d+)\)", output))


def test_web_environment_passes_the_deploy_check_but_for_the_local_http_relaxations():
    assert deploy_check(service_environment("web")) == set(LOCAL_HTTP_RELAXATIONS.values())


@pytest.mark.parametrize("variable", sorted(LOCAL_HTTP_RELAXATIONS))
def test_each_expected_warning_comes_from_its_relaxation(variable):
    # Turning one relaxation back on (as behind TLS) removes exactly its warning.
    expected = set(LOCAL_HTTP_RELAXATIONS.values()) - {LOCAL_HTTP_RELAXATIONS[variable]}
    assert deploy_check({**service_environment("web"), variable: "true"}) == expected
