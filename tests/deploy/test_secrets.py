"""The secrets of both deployments, checked offline: one Secret per credential on Kubernetes, each role mounting exactly
those it uses (and Compose handing out the same), two separate signing keys that are long and random, and settings
that refuse the templates' placeholders at start."""

import ipaddress
import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.manifests import K8S, ROOT, kustomize_build, make_secrets
from tests.deploy.readers import APP_ENV, APP_SERVICES, compose, env_file, filled_in, without_env_file_lookup

# What each role uses, by variable: the contract docs/deploy.md's table states ("Who gets which secret").
ROLE_SECRETS = {
    # web signs the API tokens and sends the address-confirmation emails itself (accounts/verification.py). It and the
    # workers serve metrics to whoever holds METRICS_TOKEN (Prometheus, k8s/monitoring/).
    "web": {
        "DJANGO_SECRET_KEY", "JWT_SIGNING_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MONGODB_URI", "METRICS_TOKEN",
    },
    "fetch-worker": {"DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MONGODB_URI", "METRICS_TOKEN"},
    "convert-worker": {"DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MONGODB_URI", "METRICS_TOKEN"},
    "notify-worker": {"DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "EMAIL_URL", "METRICS_TOKEN"},
    "flower": {"DJANGO_SECRET_KEY", "CELERY_BROKER_URL", "FLOWER_BASIC_AUTH"},
    "migrate": {"DJANGO_SECRET_KEY", "DATABASE_URL"},
    "mysql": {"MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD"},
    "rabbitmq": {"RABBITMQ_APP_PASSWORD", "RABBITMQ_MONITORING_PASSWORD"},
    "mongodb": {"MONGO_INITDB_ROOT_PASSWORD", "MONGO_APP_PASSWORD"},
}
# `manage.py migrate --check` in the init containers: the database, nothing more.
INIT_SECRETS = {"DJANGO_SECRET_KEY", "DATABASE_URL"}
COMPOSE_ROLES = {"fetch": "fetch-worker", "convert": "convert-worker", "notify": "notify-worker"}
SENTENCE = "Make one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return kustomize_build(K8S)


@pytest.fixture(scope="module")
def template() -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: doc["stringData"]
        for doc in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())
    }


@pytest.fixture(scope="module")
def config(rendered) -> dict[str, str]:
    return next(
        doc for doc in rendered if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "mp3converter-config"
    )["data"]


def generated() -> dict[str, dict[str, str]]:
    return {doc["metadata"]["name"]: doc["stringData"] for doc in make_secrets()}


def secret_variables(container: dict, template: dict[str, dict[str, str]]) -> set[str]:
    """The variables a container gets from Secrets, whole (envFrom) or key by key (secretKeyRef)."""
    names = set()
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            names |= set(template[source["secretRef"]["name"]])
    for variable in container.get("env", []):
        if variable.get("valueFrom", {}).get("secretKeyRef"):
            names.add(variable["name"])
    return names


def pods(rendered) -> dict[str, dict]:
    return {
        doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: doc["spec"]["template"]["spec"]
        for doc in rendered
        if doc["kind"] in ("Deployment", "StatefulSet", "Job")
    }


# --- Kubernetes: who mounts what ---------------------------------------------------------------------------------
def test_each_pod_gets_exactly_the_secrets_its_role_uses(rendered, template):
    found = pods(rendered)
    assert set(found) == set(ROLE_SECRETS)
    for role, spec in found.items():
        main = set().union(*(secret_variables(c, template) for c in spec["containers"]))
        assert main == ROLE_SECRETS[role], role
        for container in spec.get("initContainers", []):
            assert secret_variables(container, template) == INIT_SECRETS, (role, container["name"])


def test_the_convert_worker_holds_no_smtp_jwt_or_flower_credential(rendered, template):
    """The role that parses hostile media: a compromise there must not yield a key to forge tokens or send mail."""
    spec = pods(rendered)["convert-worker"]
    held = set().union(*(secret_variables(c, template) for c in spec["containers"] + spec["initContainers"]))
    assert held.isdisjoint({"JWT_SIGNING_KEY", "EMAIL_URL", "FLOWER_BASIC_AUTH", "MONGO_INITDB_ROOT_PASSWORD"})


def test_every_secret_is_one_credential_and_each_is_used(rendered, template):
    used = set()
    for spec in pods(rendered).values():
        for container in spec.get("initContainers", []) + spec["containers"]:
            used |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
            used |= {v["valueFrom"]["secretKeyRef"]["name"] for v in container.get("env", []) if "valueFrom" in v}
    keda = next(doc for doc in rendered if doc["kind"] == "TriggerAuthentication")["spec"]["secretTargetRef"]
    assert [(ref["name"], ref["key"]) for ref in keda] == [("mp3converter-keda", "MANAGEMENT_URL")]
    assert used | {"mp3converter-keda"} == set(template)
    # Mounted whole (envFrom), a Secret must hold one credential: otherwise a role would get its neighbours' too.
    for name in used:
        if name not in ("mp3converter-mysql", "mp3converter-rabbitmq", "mp3converter-mongodb"):
            assert len(template[name]) == 1, name


# --- Compose: the same split -------------------------------------------------------------------------------------
def secret_values() -> dict[str, str]:
    """docker/.env, filled in, with a random password in EMAIL_URL too: every secret is then a distinct value."""
    values = filled_in()
    values["EMAIL_URL"] = f"smtp://mailer:{values['MYSQL_PASSWORD'][::-1]}@mailpit:1025"
    return values


def holders(value: str, services: dict) -> set[str]:
    return {
        name
        for name, config in services.items()
        if any(value in str(v) for v in config.get("environment", {}).values())
    }


def test_each_compose_service_gets_exactly_the_secrets_its_role_uses():
    values = secret_values()
    services = compose(values)["services"]
    roles = {name: COMPOSE_ROLES.get(name, name) for name in APP_SERVICES}
    by_value = {  # secret in docker/.env → the variable that carries it to a role
        "DJANGO_SECRET_KEY": "DJANGO_SECRET_KEY",
        "JWT_SIGNING_KEY": "JWT_SIGNING_KEY",
        "MYSQL_PASSWORD": "DATABASE_URL",
        "RABBITMQ_APP_PASSWORD": "CELERY_BROKER_URL",
        "MONGO_APP_PASSWORD": "MONGODB_URI",
        "EMAIL_URL": "EMAIL_URL",
        "FLOWER_BASIC_AUTH": "FLOWER_BASIC_AUTH",
    }
    for name, variable in by_value.items():
        expected = {service for service, role in roles.items() if variable in ROLE_SECRETS[role]}
        assert holders(values[name], services) & set(APP_SERVICES) == expected, name
    # The metrics token: web only, since no Prometheus scrapes the Compose stack's workers.
    assert holders(values["METRICS_TOKEN"], services) == {"web"}
    # Each store's own credentials reach that store only (and root's never leave it).
    assert holders(values["MONGO_ROOT_PASSWORD"], services) == {"mongo"}
    assert holders(values["RABBITMQ_MONITORING_PASSWORD"], services) == {"rabbitmq"}
    assert holders(values["MYSQL_PASSWORD"], services) - set(APP_SERVICES) == {"mysql"}
    assert holders(values["DJANGO_SECRET_KEY"], services) == set(APP_SERVICES)


def test_compose_gives_no_container_the_secrets_file_whole():
    for name, config in compose(secret_values())["services"].items():
        env_files = config.get("env_file", [])
        assert ".env" not in ([env_files] if isinstance(env_files, str) else env_files), name


# --- The signing keys --------------------------------------------------------------------------------------------
def test_generated_keys_are_long_random_and_separate():
    first, second = generated(), generated()
    django_key, jwt_key = (
        first["mp3converter-django"]["DJANGO_SECRET_KEY"],
        first["mp3converter-jwt"]["JWT_SIGNING_KEY"],
    )
    assert len(django_key) >= 50 and len(jwt_key) >= 50
    assert django_key != jwt_key
    assert second["mp3converter-jwt"]["JWT_SIGNING_KEY"] != jwt_key
    example = env_file().active
    assert example["JWT_SIGNING_KEY"] != example["DJANGO_SECRET_KEY"]


def deploy_environment(config: dict, secrets: dict[str, dict[str, str]], role: str = "web") -> dict[str, str]:
    """The environment of a role's pod: the ConfigMap, then the Secrets it mounts. DJANGO_DEBUG is spelt out: a
    developer's git-ignored .env (which `make run` writes) must not switch it on here."""
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "DJANGO_DEBUG": "false", **config}
    for values in secrets.values():
        env.update({name: value for name, value in values.items() if name in ROLE_SECRETS[role]})
    return env


def manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    code = without_env_file_lookup() + (
        "import sys; from django.core.management import execute_from_command_line; "
        f"execute_from_command_line(['manage.py', *{args!r}])"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "mp3converter.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("role", ["web", "fetch-worker", "convert-worker", "notify-worker", "flower", "migrate"])
def test_each_role_starts_with_only_its_secrets_and_passes_check_deploy(config, role):
    env = deploy_environment(config, generated(), role)
    if role == "migrate":
        env["CELERY_BROKER_URL"] = "memory://"  # as migrate-job.yaml sets it
    result = manage(["check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "JWT_SIGNING_KEY"])
def test_the_templates_placeholder_keys_stop_the_service(config, template, name):
    secrets = generated()
    secret = "mp3converter-django" if name == "DJANGO_SECRET_KEY" else "mp3converter-jwt"
    secrets[secret] = template[secret]
    result = manage(["check"], deploy_environment(config, secrets))
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} contains the placeholder 'change-me'" in result.stderr
    assert SENTENCE in result.stderr


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "JWT_SIGNING_KEY"])
def test_the_compose_examples_placeholder_keys_stop_the_service(name):
    from tests.deploy.readers import service_environment

    values = {**secret_values(), name: env_file().active[name]}
    result = manage(["check"], service_environment("web", values))
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} contains the placeholder 'change-me'" in result.stderr
    assert SENTENCE in result.stderr


# --- make-secrets.sh ---------------------------------------------------------------------------------------------
def test_generated_secrets_repeat_each_password_consistently_and_are_fresh_each_time(template):
    first, second = generated(), generated()
    assert {name: set(values) for name, values in first.items()} == {
        name: set(values) for name, values in template.items()
    }
    mysql, rabbitmq, mongodb = (
        first["mp3converter-mysql"],
        first["mp3converter-rabbitmq"],
        first["mp3converter-mongodb"],
    )
    database = urlsplit(first["mp3converter-database"]["DATABASE_URL"])
    broker = urlsplit(first["mp3converter-broker"]["CELERY_BROKER_URL"])
    storage = urlsplit(first["mp3converter-storage"]["MONGODB_URI"])
    management = urlsplit(first["mp3converter-keda"]["MANAGEMENT_URL"])
    assert database.password == mysql["MYSQL_PASSWORD"]
    assert (broker.username, broker.password) == ("mp3converter", rabbitmq["RABBITMQ_APP_PASSWORD"])
    assert (management.username, management.password) == ("monitoring", rabbitmq["RABBITMQ_MONITORING_PASSWORD"])
    # The application user, authenticated by its own database (no authSource=admin: that is where root lives).
    assert (storage.username, storage.password, storage.path, storage.query) == (
        "mp3converter",
        mongodb["MONGO_APP_PASSWORD"],
        "/mp3converter",
        "",
    )
    passwords = [
        first["mp3converter-django"]["DJANGO_SECRET_KEY"],
        first["mp3converter-jwt"]["JWT_SIGNING_KEY"],
        mysql["MYSQL_PASSWORD"],
        mysql["MYSQL_ROOT_PASSWORD"],
        rabbitmq["RABBITMQ_APP_PASSWORD"],
        rabbitmq["RABBITMQ_MONITORING_PASSWORD"],
        mongodb["MONGO_INITDB_ROOT_PASSWORD"],
        mongodb["MONGO_APP_PASSWORD"],
        first["mp3converter-flower"]["FLOWER_BASIC_AUTH"].split(":", 1)[1],
        first["mp3converter-metrics"]["METRICS_TOKEN"],
    ]
    assert len(set(passwords)) == len(passwords), "every password is its own"
    assert all(len(password) >= 24 and "change-me" not in password for password in passwords)
    assert second["mp3converter-django"]["DJANGO_SECRET_KEY"] != first["mp3converter-django"]["DJANGO_SECRET_KEY"]


def test_generated_secrets_take_the_smtp_url_and_namespace_from_the_environment():
    docs = make_secrets(EMAIL_URL="smtp+tls://mailer:pw@smtp.example.org:587", NAMESPACE="media")
    values = {doc["metadata"]["name"]: doc["stringData"] for doc in docs}
    assert values["mp3converter-smtp"]["EMAIL_URL"] == "smtp+tls://mailer:pw@smtp.example.org:587"
    assert urlsplit(values["mp3converter-keda"]["MANAGEMENT_URL"]).hostname == "rabbitmq.media.svc.cluster.local"
    assert {doc["metadata"]["namespace"] for doc in docs} == {"media"}


def test_template_secrets_hold_only_placeholders(template):
    for name, values in template.items():
        for key, value in values.items():
            secret_parts = [value] if "://" not in value else [urlsplit(value).password or ""]
            if key == "FLOWER_BASIC_AUTH":
                secret_parts = [value.split(":", 1)[1]]
            for part in secret_parts:
                assert part.startswith("change-me"), f"{name}.{key} holds something that is not a placeholder"


# --- The proxies web trusts --------------------------------------------------------------------------------------
def test_web_trusts_forwarded_headers_from_the_pod_network_only(config):
    networks = [ipaddress.ip_network(part) for part in config["FORWARDED_ALLOW_IPS"].split(",")]
    assert networks and all(network.is_private for network in networks), "never `*`: a client could set the scheme"
    # One proxy, the ingress controller, appends its peer to X-Forwarded-For.
    assert config["TRUSTED_PROXY_COUNT"] == "1"


def test_compose_trusts_no_proxy():
    """Compose publishes web's port itself: no proxy sets X-Forwarded-*, so none is believed."""
    settings = env_file(APP_ENV)
    assert "FORWARDED_ALLOW_IPS" not in settings.active and settings.commented["FORWARDED_ALLOW_IPS"] == "127.0.0.1"
    assert "TRUSTED_PROXY_COUNT" not in settings.active and settings.commented["TRUSTED_PROXY_COUNT"] == "0"
