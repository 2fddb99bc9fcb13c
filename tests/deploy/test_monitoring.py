"""k8s/monitoring/, rendered by kustomize and checked offline.

Schemas: the Prometheus Operator's resources against the schemas in tests/deploy/schemas/, the dashboard's ConfigMap
against Kubernetes'. PromQL: every expression of the alerts and of the dashboard's panels parses (promql-parser), and
names only metrics, labels and label values the service exports. Beyond that: the monitors find the Service, pods,
ports and Secret that k8s/ makes, and k8s/kustomization.yaml leaves the operator's kinds out.
"""

import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from mp3converter.metrics import instruments
from mp3converter.metrics.collectors import SCRAPE_TIME_FAMILIES
from tests.deploy.manifests import K8S, kustomize_build
from tests.deploy.test_k8s import KUBERNETES_VERSION, NAMESPACE

MONITORING = K8S / "monitoring"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
OPERATOR_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
ALERTS = {
    "Mp3converterBacklogGrowing",
    "Mp3converterConversionFailureRatioHigh",
    "Mp3converterNoConverter",
    "Mp3converterWebhookFailures",
    "Mp3converterStorageErrors",
}
SCRAPED_ROLES = ("web", "fetch-worker", "convert-worker", "notify-worker")
# Labels Prometheus puts on every target of the monitors: its own, and the pod label both monitors copy.
TARGET_LABELS = {
    "job", "instance", "namespace", "pod", "container", "service", "endpoint", "app_kubernetes_io_component",
}
# Grafana's variables, which are not PromQL, replaced by values they take before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "6h"}


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return kustomize_build(MONITORING)


@pytest.fixture(scope="module")
def resources(rendered) -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in rendered}


@pytest.fixture(scope="module")
def app() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in kustomize_build(K8S)}


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"monitoring-{kind.lower()}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(doc: dict) -> list[str]:
    return [error.message for error in validator(doc["kind"]).iter_errors(doc)]


def dashboard() -> dict:
    return json.loads((MONITORING / "dashboard.json").read_text())


def rules(resources) -> list[dict]:
    return [rule for group in resources["PrometheusRule", "mp3converter"]["spec"]["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, query) of every target of every panel."""
    queries = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            query = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                query = query.replace(variable, value)
            queries.append((panel["title"], query))
    return queries


def every_query(resources) -> list[tuple[str, str]]:
    return [(rule["alert"], rule["expr"]) for rule in rules(resources)] + dashboard_queries()


# --- Schemas -----------------------------------------------------------------------------------------------------
def test_the_operators_resources_are_valid_against_the_schemas_kept_in_the_repo(rendered):
    kinds = sorted(doc["kind"] for doc in rendered)
    assert kinds == ["ConfigMap", "PodMonitor", "PrometheusRule", "ServiceMonitor"]
    for doc in rendered:
        assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
        if doc["kind"] in OPERATOR_KINDS:
            assert errors(doc) == [], doc["kind"]
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _rule(doc: dict) -> dict:
    return doc["spec"]["groups"][0]["rules"][0]


@pytest.mark.parametrize(
    "kind, name, mutate, expected",
    [
        ("PodMonitor", "workers", lambda d: d["spec"].update(podMetricEndpoints=d["spec"].pop("podMetricsEndpoints")),
         "Additional properties"),
        ("PodMonitor", "workers", lambda d: d["spec"].pop("selector"), "'selector' is a required property"),
        ("PodMonitor", "workers", lambda d: d["spec"]["podMetricsEndpoints"][0].update(port=9808), "is not of type"),
        ("ServiceMonitor", "web", lambda d: d["spec"]["endpoints"][0].update(interval="30"), "does not match"),
        ("ServiceMonitor", "web", lambda d: d["spec"]["endpoints"][0]["authorization"]["credentials"].pop("key"),
         "'key' is a required property"),
        ("ServiceMonitor", "web", lambda d: d["spec"]["endpoints"][0]["authorization"].update(type="Basic"),
         "should not be valid"),
        ("ServiceMonitor", "web",
         lambda d: d["spec"]["selector"].update(matchExpressions=[{"key": "a", "operator": "in"}]), "is not one of"),
        ("PrometheusRule", "mp3converter", lambda d: _rule(d).update({"for": 10}), "is not of type 'string'"),
        ("PrometheusRule", "mp3converter", lambda d: _rule(d).pop("expr"), "'expr' is a required property"),
        ("PrometheusRule", "mp3converter", lambda d: _rule(d).update(record="mp3converter:backlog"),
         "is not valid under"),
        ("PrometheusRule", "mp3converter", lambda d: _rule(d).update(labels={"severity": 1}),
         "is not of type 'string'"),
    ],
    ids=[
        "misspelt-endpoints", "no-selector", "port-number-as-name", "interval-without-unit", "secret-without-key",
        "basic-as-bearer", "lowercase-operator", "for-as-number", "no-expr", "alert-and-record", "label-not-a-string",
    ],
)
def test_the_schemas_reject_the_usual_mistakes(resources, kind, name, mutate, expected):
    broken = json.loads(json.dumps(resources[kind, name]))
    mutate(broken)
    messages = errors(broken)
    assert any(expected in message for message in messages), messages


def test_the_main_kustomization_leaves_the_operators_kinds_out(app):
    """`kubectl apply -k k8s/` must work on a cluster without the Prometheus Operator's CRDs."""
    assert not [key for key in app if key[0] in OPERATOR_KINDS]
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"]) | {
        name for generator in kustomization["configMapGenerator"] for name in generator["files"]
    }
    assert listed == {path.name for path in MONITORING.iterdir()} - {"kustomization.yaml"}
    assert kustomization["namespace"] == NAMESPACE


# --- The monitors find what k8s/ makes -----------------------------------------------------------------------------
def selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression  # the only operator the monitors use
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_templates(app) -> dict[str, dict]:
    return {
        name: doc["spec"]["template"]
        for (kind, name), doc in app.items()
        if kind in ("Deployment", "StatefulSet", "Job")
    }


def test_the_service_monitor_scrapes_web_through_its_service(resources, app):
    monitor = resources["ServiceMonitor", "web"]["spec"]
    services = [name for (kind, name), doc in app.items()
                if kind == "Service" and selects(monitor["selector"], doc["metadata"].get("labels", {}))]
    assert services == ["web"]
    [endpoint] = monitor["endpoints"]
    assert endpoint["port"] in {port["name"] for port in app["Service", "web"]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    scraped = [name for name, template in pod_templates(app).items()
               if selects({"matchLabels": app["Service", "web"]["spec"]["selector"]}, template["metadata"]["labels"])]
    assert scraped == ["web"]


def test_the_pod_monitor_scrapes_every_worker_on_its_metrics_port(resources, app):
    monitor = resources["PodMonitor", "workers"]["spec"]
    templates = pod_templates(app)
    scraped = {
        name for name, template in templates.items() if selects(monitor["selector"], template["metadata"]["labels"])
    }
    assert scraped == {"fetch-worker", "convert-worker", "notify-worker"}
    [endpoint] = monitor["podMetricsEndpoints"]
    port = int(app["ConfigMap", "mp3converter-config"]["data"]["WORKER_METRICS_PORT"])
    for name in scraped:
        containers = templates[name]["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for c in containers for port in c.get("ports", [])}
        assert ports == {endpoint["port"]: port}, name
    assert endpoint["path"] == "/metrics"


def test_the_monitors_send_the_token_the_scraped_pods_hold(resources, app):
    template = {doc["metadata"]["name"]: doc["stringData"]
                for doc in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())}
    endpoints = resources["ServiceMonitor", "web"]["spec"]["endpoints"] + \
        resources["PodMonitor", "workers"]["spec"]["podMetricsEndpoints"]
    for endpoint in endpoints:
        credentials = endpoint["authorization"]["credentials"]
        assert endpoint["authorization"]["type"] == "Bearer"
        assert credentials["key"] in template[credentials["name"]] and credentials["key"] == "METRICS_TOKEN"
        assert "optional" not in credentials  # no token, no scrape: never an open one
    for name in SCRAPED_ROLES:
        [container] = pod_templates(app)[name]["spec"]["containers"]
        mounted = {source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source}
        assert "mp3converter-metrics" in mounted, name
    for monitor in ("web", "workers"):
        kind = "ServiceMonitor" if monitor == "web" else "PodMonitor"
        assert resources[kind, monitor]["spec"]["podTargetLabels"] == ["app.kubernetes.io/component"]


# --- The alerts ----------------------------------------------------------------------------------------------------
def test_the_five_alerts_wait_a_while_and_say_what_is_wrong(resources):
    found = {rule["alert"]: rule for rule in rules(resources)}
    assert set(found) == ALERTS
    for name, rule in found.items():
        assert re.fullmatch(r"\d+m", rule["for"]) and int(rule["for"][:-1]) >= 5, name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert set(rule["annotations"]) == {"summary", "description"}, name


# --- PromQL --------------------------------------------------------------------------------------------------------
def test_every_query_of_the_alerts_and_the_dashboard_parses(resources):
    queries = every_query(resources)
    assert len(queries) >= 30
    for where, query in queries:
        try:
            promql_parser.parse(query)
        except ValueError as error:
            pytest.fail(f"{where}: {error}\n{query}")


def test_the_parser_refuses_a_broken_query():
    """Guards the test above: an unclosed parenthesis or a misplaced range must fail to parse."""
    for broken in ("sum(rate(mp3converter_storage_errors_total[5m])", "rate(mp3converter_storage_errors_total)[5m]"):
        with pytest.raises(ValueError):
            promql_parser.parse(broken)


def exported_series() -> dict[str, set[str]]:
    """Every series name the service exports, with the labels it carries, and Prometheus's own `up`."""
    series = {"up": set()}
    for metric in vars(instruments).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = set(metric._labelnames)
        if metric._type == "counter":
            series[f"{metric._name}_total"] = labels
        elif metric._type == "histogram":
            series[f"{metric._name}_bucket"] = labels | {"le"}
            series[f"{metric._name}_count"] = series[f"{metric._name}_sum"] = labels
        else:
            series[metric._name] = labels
    for name, labels in SCRAPE_TIME_FAMILIES.items():
        series[name] = set(labels)
    return {name: labels | TARGET_LABELS for name, labels in series.items()}


def known_label_values() -> dict[str, set[str]]:
    from django.conf import settings
    from django.urls import get_resolver

    from conversions.models import Conversion

    return {
        "status": {str(status) for status in Conversion.Status} | {str(code) for code in range(100, 600)},
        "queue": {queue.name for queue in settings.CELERY_TASK_QUEUES},
        "outcome": set(instruments.WEBHOOK_OUTCOMES),
        "by": set(instruments.REDELIVERED_BY),
        "direction": {"in", "out"},
        "view": {name for name in get_resolver().reverse_dict if isinstance(name, str)},
        "app_kubernetes_io_component": set(SCRAPED_ROLES),
    }


def selectors_and_groupings(query: str) -> tuple[list, set[str]]:
    found, grouped = [], set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouped.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier and node.modifier.matching:
            grouped.update(node.modifier.matching.labels)
        return True

    promql_parser.walk(promql_parser.parse(query), visit)
    return found, grouped


def test_the_queries_name_only_series_labels_and_values_the_service_exports(resources):
    series, values = exported_series(), known_label_values()
    assert "mp3converter_conversions_finished_total" in series and "mp3converter_queue_messages" in series
    for where, query in every_query(resources):
        selectors, grouped = selectors_and_groupings(query)
        assert selectors, where
        labels = set()
        for selector in selectors:
            assert selector.name in series, f"{where}: {selector.name} is not a series the service exports"
            labels |= series[selector.name]
            for matcher in selector.matchers.matchers:
                assert matcher.name in series[selector.name], f"{where}: {selector.name} has no label {matcher.name}"
                if matcher.name in values and matcher.value:
                    regex = matcher.op in (promql_parser.MatchOp.Re, promql_parser.MatchOp.NotRe)
                    wanted = set(matcher.value.split("|")) if regex else {matcher.value}
                    unknown = wanted - values[matcher.name]
                    assert not unknown, f"{where}: {matcher.name} never takes {unknown}"
        assert grouped <= labels, f"{where}: grouped by {grouped - labels}, which its series do not carry"


def test_the_check_above_notices_a_misspelt_metric_or_label():
    series, values = exported_series(), known_label_values()
    [selector], _ = selectors_and_groupings('rate(mp3converter_conversion_finished_total{status="done"}[5m])')
    assert selector.name not in series
    [selector], _ = selectors_and_groupings('max(mp3converter_queue_messages{queue="conversion"})')
    assert selector.matchers.matchers[0].value not in values["queue"]


# --- The dashboard -------------------------------------------------------------------------------------------------
def test_the_dashboard_is_one_grafana_dashboard_on_a_chosen_prometheus(resources):
    board = dashboard()
    assert board["uid"] == "mp3converter" and board["title"]
    [variable] = board["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    graphs = [panel for panel in board["panels"] if panel["type"] != "row"]
    assert len(graphs) >= 15
    for panel in graphs:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
    config_map = resources["ConfigMap", "mp3converter-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["dashboard.json"]) == board
