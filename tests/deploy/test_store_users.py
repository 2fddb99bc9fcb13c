"""The users the data stores are set up with, on Kubernetes and in Compose alike.

RabbitMQ: docker/rabbitmq-start.sh (and its copy in k8s/rabbitmq.yaml) runs for real here, with the image's entrypoint
replaced by a stand-in, and the definitions it writes are read as the broker would import them: an app user that is
no administrator, a monitoring user that can take no message, nothing else; the management UI's Ingress allows
private source addresses only. MongoDB: the init script creates an application user with readWrite on its database
only, and the app's MONGODB_URI names that user, never root.
"""

import ipaddress
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.manifests import K8S, kustomize_build
from tests.deploy.readers import DOCKER, ROOT, compose, env_file, filled_in

START_SCRIPT = DOCKER / "rabbitmq-start.sh"
MONGO_INIT = DOCKER / "mongo-init.js"
DEFINITIONS = "/tmp/mp3converter-definitions.json"
PRIVATE_RANGES = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in kustomize_build(K8S)}


@pytest.fixture(scope="module")
def template() -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: doc["stringData"]
        for doc in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())
    }


def container_env(statefulset: dict) -> dict[str, dict]:
    [container] = statefulset["spec"]["template"]["spec"]["containers"]
    return {variable["name"]: variable for variable in container["env"]}


def start_broker(tmp_path: Path, **env) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Runs the start script with a stand-in for the image's entrypoint, which records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "docker-entrypoint.sh"
    stand_in.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/entrypoint-args\n')
    stand_in.chmod(0o755)
    definitions = tmp_path / "definitions.json"
    result = subprocess.run(
        ["sh", str(START_SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "RABBITMQ_DEFINITIONS_FILE": str(definitions), **env},
    )
    return result, json.loads(definitions.read_text()) if definitions.exists() else None


BROKER_ENV = {
    "RABBITMQ_VHOST": "mp3converter",
    "RABBITMQ_APP_USER": "mp3converter",
    "RABBITMQ_APP_PASSWORD": "app-password-1",
    "RABBITMQ_MONITORING_USER": "monitoring",
    "RABBITMQ_MONITORING_PASSWORD": "monitoring-password-2",
}


# --- RabbitMQ ----------------------------------------------------------------------------------------------------
def test_the_broker_gets_an_app_user_and_a_read_only_monitoring_user_and_no_administrator(tmp_path):
    result, definitions = start_broker(tmp_path, **BROKER_ENV)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "entrypoint-args").read_text().split() == ["rabbitmq-server"]
    assert definitions["vhosts"] == [{"name": "mp3converter"}]
    users = {user["name"]: user for user in definitions["users"]}
    assert users == {
        "mp3converter": {"name": "mp3converter", "password": "app-password-1", "tags": []},
        "monitoring": {"name": "monitoring", "password": "monitoring-password-2", "tags": ["monitoring"]},
    }
    permissions = {p["user"]: p for p in definitions["permissions"]}
    assert permissions["mp3converter"] == {
        "user": "mp3converter",
        "vhost": "mp3converter",
        "configure": ".*",
        "write": ".*",
        "read": ".*",
    }
    # "^$" matches no queue or exchange name: it can neither consume, nor publish, nor declare.
    assert permissions["monitoring"] == {
        "user": "monitoring",
        "vhost": "mp3converter",
        "configure": "^$",
        "write": "^$",
        "read": "^$",
    }
    assert (tmp_path / "definitions.json").stat().st_mode & 0o077 == 0, "the file holds passwords"


@pytest.mark.parametrize("missing", ["RABBITMQ_APP_PASSWORD", "RABBITMQ_MONITORING_PASSWORD", "RABBITMQ_VHOST"])
def test_the_broker_does_not_start_without_its_credentials(tmp_path, missing):
    result, definitions = start_broker(tmp_path, **{k: v for k, v in BROKER_ENV.items() if k != missing})
    assert result.returncode != 0 and missing in result.stderr
    assert definitions is None and not (tmp_path / "entrypoint-args").exists()


def test_a_password_that_would_break_the_json_is_refused(tmp_path):
    result, definitions = start_broker(
        tmp_path, **{**BROKER_ENV, "RABBITMQ_APP_PASSWORD": 'a", "tags": ["administrator'}
    )
    assert result.returncode == 64 and "letters, digits, - and _" in result.stderr
    assert definitions is None


def test_kubernetes_runs_the_same_script_and_imports_its_definitions(resources, template):
    config = resources["ConfigMap", "rabbitmq-config"]["data"]
    assert config["start.sh"] == START_SCRIPT.read_text()
    assert f"load_definitions = {DEFINITIONS}" in config["20-mp3converter.conf"].splitlines()
    assert f"load_definitions = {DEFINITIONS}" in (DOCKER / "rabbitmq.conf").read_text().splitlines()
    statefulset = resources["StatefulSet", "rabbitmq"]
    [container] = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "/etc/rabbitmq/mp3converter/start.sh"]
    env = container_env(statefulset)
    assert not any(name.startswith("RABBITMQ_DEFAULT_") for name in env), "no default (administrator) user"
    broker = urlsplit(template["mp3converter-broker"]["CELERY_BROKER_URL"])
    management = urlsplit(template["mp3converter-keda"]["MANAGEMENT_URL"])
    assert (env["RABBITMQ_APP_USER"]["value"], env["RABBITMQ_VHOST"]["value"]) == (broker.username, broker.path[1:])
    assert env["RABBITMQ_MONITORING_USER"]["value"] == management.username
    assert broker.password == template["mp3converter-rabbitmq"]["RABBITMQ_APP_PASSWORD"]
    assert management.password == template["mp3converter-rabbitmq"]["RABBITMQ_MONITORING_PASSWORD"]


def test_compose_runs_the_same_script_with_the_same_users():
    rabbitmq = compose(filled_in())["services"]["rabbitmq"]
    assert rabbitmq["entrypoint"] == ["/bin/sh", "/etc/rabbitmq/mp3converter-start.sh"]
    assert "./rabbitmq-start.sh:/etc/rabbitmq/mp3converter-start.sh:ro" in rabbitmq["volumes"]
    assert set(rabbitmq["environment"]) == set(BROKER_ENV)
    assert "RABBITMQ_DEFAULT" not in (DOCKER / "compose.yaml").read_text() + (DOCKER / ".env.example").read_text()


def test_the_management_ui_is_reachable_from_private_addresses_only(resources):
    ingress = resources["Ingress", "rabbitmq-management"]
    allowlist = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/whitelist-source-range"]
    assert allowlist == PRIVATE_RANGES
    assert all(ipaddress.ip_network(cidr).is_private for cidr in allowlist.split(","))
    # The service itself stays public.
    assert (
        "nginx.ingress.kubernetes.io/whitelist-source-range"
        not in resources["Ingress", "web"]["metadata"]["annotations"]
    )


# --- MongoDB -----------------------------------------------------------------------------------------------------
def test_the_init_script_creates_a_read_write_user_on_one_database():
    script = MONGO_INIT.read_text()
    assert "createUser" in script and script.count("role:") == 1
    assert 'roles: [{ role: "readWrite", db: name }]' in script
    assert "const name = process.env.MONGO_INITDB_DATABASE;" in script


def test_kubernetes_mongodb_creates_the_app_user_the_storage_secret_names(resources, template):
    assert resources["ConfigMap", "mongodb-init"]["data"]["10-app-user.js"] == MONGO_INIT.read_text()
    statefulset = resources["StatefulSet", "mongodb"]
    spec = statefulset["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/docker-entrypoint-initdb.d"]]["configMap"]["name"] == "mongodb-init"
    env = container_env(statefulset)
    uri = urlsplit(template["mp3converter-storage"]["MONGODB_URI"])
    assert uri.username == env["MONGO_APP_USERNAME"]["value"] != env["MONGO_INITDB_ROOT_USERNAME"]["value"]
    assert uri.path == "/" + env["MONGO_INITDB_DATABASE"]["value"] and "authSource" not in uri.query
    assert uri.password == template["mp3converter-mongodb"]["MONGO_APP_PASSWORD"]
    assert env["MONGO_APP_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "MONGO_APP_PASSWORD"
    # Root's password is in the MongoDB pod and in no Secret an app role mounts.
    root = template["mp3converter-mongodb"]["MONGO_INITDB_ROOT_PASSWORD"]
    assert root != uri.password
    for name, values in template.items():
        if name != "mp3converter-mongodb":
            assert not any(root in value for value in values.values()), name


def test_compose_mongo_creates_the_app_user_the_app_signs_in_as():
    values = filled_in()
    services = compose(values)["services"]
    mongo = services["mongo"]
    assert "./mongo-init.js:/docker-entrypoint-initdb.d/10-app-user.js:ro" in mongo["volumes"]
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"] == values["MONGO_ROOT_PASSWORD"]
    uri = urlsplit(services["web"]["environment"]["MONGODB_URI"])
    assert (uri.username, uri.password) == (mongo["environment"]["MONGO_APP_USERNAME"], values["MONGO_APP_PASSWORD"])
    assert uri.username != mongo["environment"]["MONGO_INITDB_ROOT_USERNAME"]
    assert uri.path == "/" + mongo["environment"]["MONGO_INITDB_DATABASE"]
    assert env_file().active["MONGO_ROOT_PASSWORD"] != env_file().active["MONGO_APP_PASSWORD"]


def test_the_scripts_are_where_the_docs_say(resources):
    for path in (START_SCRIPT, MONGO_INIT):
        assert path.is_file() and str(path.relative_to(ROOT)) in (ROOT / "docs" / "deploy.md").read_text()
