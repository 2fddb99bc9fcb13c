"""The Kubernetes manifests, rendered by kustomize exactly as `kubectl apply -k k8s/` renders them, checked offline.

Schemas: the Kubernetes API's own (bundled by kubernetes-validate, strict: unknown fields are errors) and, for KEDA's
custom resources, the schemas in tests/deploy/schemas/. Beyond the schemas: that the pieces fit together (names,
ports, probes, secrets) and agree with the application's settings and scripts.
"""

import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.manifests import K8S, ROOT, kustomize_build, make_secrets, repo_command

SCHEMAS = Path(__file__).resolve().parent / "schemas"
# The newest Kubernetes release whose schemas kubernetes-validate bundles (tests/requirements.txt pins it).
KUBERNETES_VERSION = "1.37.0"
NAMESPACE = "mp3converter"
APP_ROLES = ("web", "fetch-worker", "convert-worker", "notify-worker", "flower")
# Not applied by the kustomization: the Secret template (see docs/deploy.md).
NOT_RESOURCES = {"kustomization.yaml", "secrets.example.yaml"}


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return kustomize_build(K8S)


@pytest.fixture(scope="module")
def resources(rendered) -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in rendered}


@pytest.fixture(scope="module")
def template_secrets() -> dict[str, dict]:
    docs = yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())
    return {doc["metadata"]["name"]: doc for doc in docs}


@pytest.fixture(scope="module")
def config(resources) -> dict[str, str]:
    return resources["ConfigMap", "mp3converter-config"]["data"]


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def workloads(resources) -> dict[tuple[str, str], dict]:
    return {key: doc for key, doc in resources.items() if key[0] in ("Deployment", "StatefulSet", "Job")}


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def app_workloads(resources) -> dict[str, dict]:
    """Deployments and the Job that run this project's image, by name."""
    return {
        name: doc for (kind, name), doc in workloads(resources).items()
        if any(c["image"].startswith("mp3converter") for c in pod_spec(doc)["containers"])
    }


def repo_script(command: list[str]) -> Path:
    return Path(repo_command(command)[0])


# --- Schemas -----------------------------------------------------------------------------------------------------
def test_every_rendered_manifest_is_valid_against_the_kubernetes_schemas(rendered):
    builtin = [doc for doc in rendered if not doc["apiVersion"].startswith("keda.sh/")]
    assert len(builtin) >= 20
    for doc in builtin:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_a_misspelt_field(resources):
    """Guards the test above: a typo such as `readinesProbe` must fail, not pass unnoticed."""
    broken = json.loads(json.dumps(resources["Deployment", "web"]))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def keda_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"keda-{kind.lower()}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_keda_resources_are_valid_against_the_schemas_kept_in_the_repo(rendered):
    keda = [doc for doc in rendered if doc["apiVersion"].startswith("keda.sh/")]
    assert sorted(doc["kind"] for doc in keda) == ["ScaledObject", "TriggerAuthentication"]
    for doc in keda:
        errors = [error.message for error in keda_validator(doc["kind"]).iter_errors(doc)]
        assert errors == [], f"{doc['kind']}: {errors}"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda so: so["spec"]["triggers"][0]["metadata"].update(value=1), "is not of type 'string'"),
        (lambda so: so["spec"]["triggers"][0]["metadata"].update(protocl="http"), "Additional properties"),
        (lambda so: so["spec"].update(minReplicas=0), "Additional properties"),
        (lambda so: so["spec"]["triggers"][0]["metadata"].update(protocol="https"), "is not one of"),
    ],
    ids=["number-in-metadata", "misspelt-metadata-key", "hpa-field-name", "unknown-protocol"],
)
def test_the_keda_schema_rejects_the_usual_mistakes(resources, mutate, expected):
    broken = json.loads(json.dumps(resources["ScaledObject", "convert-worker"]))
    mutate(broken)
    messages = [error.message for error in keda_validator("ScaledObject").iter_errors(broken)]
    assert any(expected in message for message in messages), messages


def test_secret_templates_and_generated_secrets_are_valid_secrets(template_secrets):
    generated = make_secrets()
    assert sorted(doc["metadata"]["name"] for doc in generated) == sorted(template_secrets)
    for doc in [*template_secrets.values(), *generated]:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == NAMESPACE


# --- The kustomization -------------------------------------------------------------------------------------------
def test_the_kustomization_lists_exactly_the_manifests_that_exist():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    on_disk = {path.name for path in K8S.glob("*.yaml")} - NOT_RESOURCES
    assert set(listed) == on_disk
    assert not list(K8S.glob("*.yml")), "use the .yaml extension, so the check above sees every manifest"
    assert kustomization["namespace"] == NAMESPACE


def test_every_namespaced_resource_lands_in_the_namespace(rendered):
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
    assert rendered[0]["kind"] == "Namespace", "kustomize orders the Namespace first"


# --- The application's shape -------------------------------------------------------------------------------------
def test_the_roles_run_as_the_classic_design_sizes_them(resources):
    replicas = {name: resources["Deployment", name]["spec"]["replicas"] for name in APP_ROLES}
    assert replicas == {"web": 3, "fetch-worker": 2, "convert-worker": 4, "notify-worker": 4, "flower": 1}
    assert resources["Job", "migrate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["/app/docker/bin/migrate"]
    for kind, name in [("StatefulSet", "rabbitmq"), ("StatefulSet", "mysql"), ("StatefulSet", "mongodb")]:
        statefulset = resources[kind, name]
        assert statefulset["spec"]["volumeClaimTemplates"], f"{name} keeps its data on a PVC"
        assert ("Service", statefulset["spec"]["serviceName"]) in resources


def test_every_app_container_runs_one_image_through_a_role_entrypoint(resources):
    for name, doc in app_workloads(resources).items():
        for container in containers(pod_spec(doc)):
            assert container["image"] == "mp3converter:local", (name, container["image"])
            # args, not command: the image's entrypoint (tini, which reaps orphaned ffmpeg processes) stays PID 1.
            assert "command" not in container, (name, container["name"])
            script = repo_script(container["args"])
            assert script.is_file() and os.access(script, os.X_OK), f"{name}: {script} is not an executable script"
    commands = {resources["Deployment", name]["spec"]["template"]["spec"]["containers"][0]["args"][0] for name in APP_ROLES}
    assert commands == {f"/app/docker/bin/{role}" for role in APP_ROLES}


def test_web_probes_are_healthz_and_readyz(resources):
    web = resources["Deployment", "web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_worker_probes_read_the_heartbeat_and_ready_files_not_celery_inspect(resources, config):
    for name in ("fetch-worker", "convert-worker", "notify-worker"):
        worker = resources["Deployment", name]["spec"]["template"]["spec"]["containers"][0]
        assert worker["livenessProbe"]["exec"]["command"] == ["/app/docker/bin/worker-health", "live"]
        assert worker["startupProbe"]["exec"]["command"] == ["/app/docker/bin/worker-health", "live"]
        assert worker["readinessProbe"]["exec"]["command"] == ["/app/docker/bin/worker-health", "ready"]
    # The files live on the writable /tmp volume.
    assert config["CELERY_WORKER_HEARTBEAT_FILE"].startswith("/tmp/")
    assert config["CELERY_WORKER_READY_FILE"].startswith("/tmp/")
    assert "inspect" not in (K8S / "convert-worker.yaml").read_text() + (K8S / "notify-worker.yaml").read_text()


def test_every_pod_is_non_root_and_unprivileged(resources):
    for (kind, name), doc in workloads(resources).items():
        spec = pod_spec(doc)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] > 0, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in containers(spec):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert security["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])


def dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "docker" / "Dockerfile").read_text(), re.MULTILINE)
    assert users, "the Dockerfile sets no USER"
    return int(users[-1].split(":")[0])


def test_app_pods_run_as_the_image_user_on_a_read_only_root_with_tmp_on_an_empty_dir(resources):
    uid = dockerfile_uid()
    for name, doc in app_workloads(resources).items():
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsUser"] == uid, name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in containers(spec):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, (name, container["name"])
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], (name, container["name"])


def test_every_container_has_requests_and_a_memory_limit(resources):
    for (kind, name), doc in workloads(resources).items():
        for container in containers(pod_spec(doc)):
            resources_ = container["resources"]
            assert {"cpu", "memory"} <= set(resources_["requests"]), (name, container["name"])
            assert "memory" in resources_["limits"], (name, container["name"])


def test_config_and_secret_references_resolve(resources, template_secrets):
    config_maps = {name for kind, name in resources if kind == "ConfigMap"}
    for (kind, name), doc in workloads(resources).items():
        spec = pod_spec(doc)
        for container in containers(spec):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                else:
                    assert source["secretRef"]["name"] in template_secrets
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in template_secrets[ref["name"]]["stringData"], (name, ref)
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps


def test_services_select_pods_and_name_their_ports(resources):
    templates = [
        (doc["spec"]["template"]["metadata"]["labels"], pod_spec(doc)) for doc in workloads(resources).values()
    ]
    for (kind, name), service in resources.items():
        if kind != "Service":
            continue
        matches = [spec for labels, spec in templates if service["spec"]["selector"].items() <= labels.items()]
        assert matches, f"Service {name} selects no pods"
        port_names = {port["name"] for spec in matches for c in spec["containers"] for port in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (name, port)


def test_ingresses_route_the_public_hosts_to_existing_service_ports(resources, config):
    routes = {}
    for (kind, name), ingress in resources.items():
        if kind != "Ingress":
            continue
        assert ingress["spec"]["ingressClassName"] == "nginx"
        tls_hosts = {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] in tls_hosts
            backend = rule["http"]["paths"][0]["backend"]["service"]
            service = resources["Service", backend["name"]]
            assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
            routes[rule["host"]] = (backend["name"], backend["port"]["name"])
    assert routes == {"mp3converter.com": ("web", "http"), "rabbitmq-manager.com": ("rabbitmq", "management")}
    assert config["ALLOWED_HOSTS"].split(",") == ["mp3converter.com"]
    assert config["CSRF_TRUSTED_ORIGINS"] == config["PUBLIC_BASE_URL"] == "https://mp3converter.com"


def test_the_ingress_upload_limit_matches_max_upload_mb(resources, config):
    annotations = resources["Ingress", "web"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == f"{config['MAX_UPLOAD_MB']}m"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= int(config["WEB_TIMEOUT"])


# --- Scaling -----------------------------------------------------------------------------------------------------
def test_web_scales_on_cpu_from_its_replica_count(resources):
    hpa = resources["HorizontalPodAutoscaler", "web"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert hpa["minReplicas"] == resources["Deployment", "web"]["spec"]["replicas"]
    assert [metric["resource"]["name"] for metric in hpa["metrics"]] == ["cpu"]
    assert resources["PodDisruptionBudget", "web"]["spec"]["minAvailable"] < hpa["minReplicas"]


def test_keda_scales_converters_on_the_convert_queue_over_http_from_zero(resources, template_secrets, config):
    scaled = resources["ScaledObject", "convert-worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "convert-worker"
    assert ("Deployment", "convert-worker") in resources
    assert scaled["minReplicaCount"] == 0 < scaled["maxReplicaCount"]
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    # HTTP (the management API) counts unacknowledged messages: a running conversion keeps its pod.
    assert trigger["metadata"]["protocol"] == "http"
    assert trigger["metadata"]["queueName"] == "convert"
    assert trigger["metadata"]["mode"] == "QueueLength"
    # One message per pod matches one conversion per pod.
    assert trigger["metadata"]["value"] == config["CONVERT_CONCURRENCY"] == "1"
    auth = resources["TriggerAuthentication", trigger["authenticationRef"]["name"]]["spec"]
    [host] = auth["secretTargetRef"]
    assert host["parameter"] == "host"
    url = urlsplit(template_secrets[host["name"]]["stringData"][host["key"]])
    assert url.scheme == "http" and url.port == 15672
    # KEDA runs in its own namespace: the host must be the service's full name, with the broker's vhost as path.
    assert url.hostname == f"rabbitmq.{NAMESPACE}.svc.cluster.local"
    broker = urlsplit(template_secrets["mp3converter-broker"]["stringData"]["CELERY_BROKER_URL"])
    assert url.path == "/" + broker.path.lstrip("/")
    # ...signed in as the read-only monitoring user, never as the app (tests/deploy/test_store_users.py).
    assert url.username == "monitoring" != broker.username


def test_scale_down_never_kills_a_running_conversion(resources, config):
    hard_limit = int(config["CONVERSION_HARD_TIME_LIMIT"])
    assert int(config["CONVERSION_SOFT_TIME_LIMIT"]) < hard_limit
    convert = resources["Deployment", "convert-worker"]["spec"]["template"]["spec"]
    assert convert["terminationGracePeriodSeconds"] >= hard_limit
    # ...and RabbitMQ must not take the message back from a conversion that is still inside its time limit.
    rabbitmq_conf = resources["ConfigMap", "rabbitmq-config"]["data"]["20-mp3converter.conf"]
    consumer_timeout_ms = int(re.search(r"^consumer_timeout\s*=\s*(\d+)", rabbitmq_conf, re.MULTILINE).group(1))
    assert consumer_timeout_ms > hard_limit * 1000


# --- Configuration agrees with the application -------------------------------------------------------------------
def variables_the_project_reads() -> set[str]:
    names = set()
    for path in [*(ROOT / "mp3converter").rglob("*.py"), *(ROOT / "conversions").rglob("*.py")]:
        names |= set(re.findall(r"""env(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""", path.read_text()))
    for script in (ROOT / "docker" / "bin").iterdir():
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", script.read_text()))
    # Read by the libraries themselves: Celery's broker URL, Flower's credentials, boto3's credentials.
    names |= {"CELERY_BROKER_URL", "FLOWER_BASIC_AUTH", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    return names


def test_every_configured_variable_is_one_the_project_reads(resources, config, template_secrets):
    known = variables_the_project_reads()
    assert "MAX_UPLOAD_MB" in known and "WEB_THREADS" in known  # the scan works
    assert set(config) - known == set(), "misspelt or unused variables in configmap.yaml"
    app_secrets = {
        source["secretRef"]["name"] for doc in app_workloads(resources).values() for c in containers(pod_spec(doc))
        for source in c.get("envFrom", []) if "secretRef" in source
    }
    assert len(app_secrets) >= 7
    for name in app_secrets:
        assert set(template_secrets[name]["stringData"]) - known == set(), name
