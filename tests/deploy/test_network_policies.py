"""k8s/network-policies.yaml, evaluated offline as a network plugin would enforce it.

The rendered policies are checked against the Kubernetes schemas (as every manifest is, tests/deploy/test_k8s.py),
then read by a small evaluator of the NetworkPolicy rules (pod and namespace selectors with matchLabels and
matchExpressions, ipBlock with except, ports and protocols, isolation per direction) over the pods of the manifests
and the peers outside the namespace: the ingress controller, KEDA, the cluster DNS, a pod of another namespace, an
SMTP relay on the internet and a host on a private network. The whole connection matrix is compared with the one the
service needs, so a rule that opens too much fails as surely as one that opens too little.
"""

import ipaddress
import json
from dataclasses import dataclass, field
from itertools import product

import kubernetes_validate
import pytest

from tests.deploy.manifests import K8S, kustomize_build
from tests.deploy.test_k8s import KUBERNETES_VERSION, NAMESPACE

COMPONENT = "app.kubernetes.io/component"


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str | None  # None: outside the cluster, reached by address
    labels: dict = field(default_factory=dict, hash=False)
    ip: str | None = None


OUTSIDE = [
    Endpoint("ingress-nginx", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx", COMPONENT: "controller"}),
    Endpoint("keda", "keda", {"app": "keda-operator"}),
    Endpoint("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}),
    # Another pod of the monitoring namespace (Grafana, say): it scrapes nothing.
    Endpoint("grafana", "monitoring", {"app.kubernetes.io/name": "grafana"}),
    Endpoint("dns", "kube-system", {"k8s-app": "kube-dns"}),
    Endpoint("other-namespace", "default", {"app.kubernetes.io/name": "mp3converter", COMPONENT: "web"}),
    Endpoint("internet", None, ip="203.0.113.25"),
    Endpoint("private-host", None, ip="10.1.2.3"),
]
TCP_PORTS = (25, 80, 443, 465, 587, 3306, 5555, 5672, 8000, 9808, 15672, 27017)
PORTS = [(port, "TCP") for port in TCP_PORTS] + [(53, "UDP"), (53, "TCP")]
MAIL = [(25, "TCP"), (465, "TCP"), (587, "TCP")]
WEB = [(80, "TCP"), (443, "TCP")]
DNS = [("dns", 53, "UDP"), ("dns", 53, "TCP")]
# Every connection the service makes (source, destination, port, protocol); everything else must be refused.
NEEDED = {
    ("ingress-nginx", "web", 8000, "TCP"),
    ("ingress-nginx", "rabbitmq", 15672, "TCP"),
    ("keda", "rabbitmq", 15672, "TCP"),
    # Prometheus scrapes web's /metrics and each worker's metrics port (k8s/monitoring/).
    ("prometheus", "web", 8000, "TCP"),
    *[("prometheus", role, 9808, "TCP") for role in ("fetch-worker", "convert-worker", "notify-worker")],
    *[(role, "mysql", 3306, "TCP") for role in ("web", "fetch-worker", "convert-worker", "notify-worker", "migrate")],
    *[(role, "rabbitmq", 5672, "TCP") for role in ("web", "fetch-worker", "convert-worker", "notify-worker", "flower")],
    *[(role, "mongodb", 27017, "TCP") for role in ("web", "fetch-worker", "convert-worker")],
    *[(role, "internet", port, protocol) for role in ("notify-worker",) for port, protocol in MAIL],
    # URL imports and webhooks: only the fetch and notify workers reach web servers on the internet.
    *[(role, "internet", port, protocol) for role in ("fetch-worker", "notify-worker") for port, protocol in WEB],
    *[
        (pod, dns, port, protocol)
        for pod in (
            "web", "fetch-worker", "convert-worker", "notify-worker", "flower", "migrate", "mysql", "rabbitmq", "mongodb"
        )
        for dns, port, protocol in DNS
    ],
}


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return kustomize_build(K8S)


@pytest.fixture(scope="module")
def policies(rendered) -> list[dict]:
    return [doc for doc in rendered if doc["kind"] == "NetworkPolicy"]


@pytest.fixture(scope="module")
def pods(rendered) -> list[Endpoint]:
    labels = [
        doc["spec"]["template"]["metadata"]["labels"]
        for doc in rendered
        if doc["kind"] in ("Deployment", "StatefulSet", "Job")
    ]
    return [Endpoint(pod[COMPONENT], NAMESPACE, pod) for pod in labels]


# --- The evaluator -----------------------------------------------------------------------------------------------
def selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if not {
            "In": present and labels[key] in values,
            "NotIn": not present or labels[key] not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def peer_matches(peer: dict, policy_namespace: str, endpoint: Endpoint) -> bool:
    if "ipBlock" in peer:
        if endpoint.ip is None:
            return False
        address, block = ipaddress.ip_address(endpoint.ip), peer["ipBlock"]
        if address.version != ipaddress.ip_network(block["cidr"]).version:
            return False
        excluded = any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excluded
    if endpoint.namespace is None:
        return False
    if "namespaceSelector" in peer:
        namespace_ok = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": endpoint.namespace})
    else:
        namespace_ok = endpoint.namespace == policy_namespace
    return namespace_ok and ("podSelector" not in peer or selects(peer["podSelector"], endpoint.labels))


def port_matches(rule: dict, port: int, protocol: str) -> bool:
    if "ports" not in rule:
        return True
    for allowed in rule["ports"]:
        assert isinstance(allowed.get("port"), int), "policies name ports by number (test_ports_are_the_containers)"
        if allowed.get("protocol", "TCP") == protocol and allowed["port"] == port:
            return True
    return False


def isolating(policies: list[dict], pod: Endpoint, direction: str) -> list[dict]:
    """The policies that select a pod for a direction: with any, only what they allow goes through."""
    return [
        p for p in policies if selects(p["spec"]["podSelector"], pod.labels) and direction in p["spec"]["policyTypes"]
    ]


def direction_allows(policies: list[dict], direction: str, subject: Endpoint, peer: Endpoint, port, protocol) -> bool:
    """Whether `subject`'s policies let the connection through in one direction (Ingress: from `peer`)."""
    if subject.namespace != NAMESPACE:
        return True  # not ours: other namespaces' policies are their owners' business
    applying = isolating(policies, subject, direction)
    if not applying:
        return True  # not isolated in this direction
    key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(
        port_matches(rule, port, protocol)
        and ("to" not in rule and "from" not in rule or any(peer_matches(x, NAMESPACE, peer) for x in rule[peers]))
        for policy in applying
        for rule in policy["spec"].get(key, [])
    )


def allowed(policies, source: Endpoint, destination: Endpoint, port: int, protocol: str) -> bool:
    return direction_allows(policies, "Egress", source, destination, port, protocol) and direction_allows(
        policies, "Ingress", destination, source, port, protocol
    )


def matrix(policies, pods) -> set[tuple[str, str, int, str]]:
    endpoints = pods + OUTSIDE
    return {
        (source.name, destination.name, port, protocol)
        for source, destination in product(endpoints, endpoints)
        if source != destination and NAMESPACE in (source.namespace, destination.namespace)
        for port, protocol in PORTS
        if allowed(policies, source, destination, port, protocol)
    }


# --- Schema and coverage -----------------------------------------------------------------------------------------
def test_the_policies_are_valid_and_a_misspelt_one_is_not(policies):
    assert len(policies) >= 10
    for policy in policies:
        kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    broken = json.loads(json.dumps(policies[0]))
    broken["spec"]["podSelectr"] = broken["spec"].pop("podSelector")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_a_default_deny_covers_every_pod_in_both_directions(policies, pods):
    [deny] = [p for p in policies if p["metadata"]["name"] == "default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for pod in pods:
        for direction in ("Ingress", "Egress"):
            assert deny in isolating(policies, pod, direction), (pod.name, direction)


def test_every_selector_selects_a_pod(policies, pods):
    """A misspelt label would select nothing, and its pods would lose (or never get) their allowances."""
    for policy in policies:
        assert any(selects(policy["spec"]["podSelector"], pod.labels) for pod in pods), policy["metadata"]["name"]
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert any(selects(peer["podSelector"], pod.labels) for pod in pods), (
                        policy["metadata"]["name"],
                        peer,
                    )


def test_ports_are_the_containers(rendered, policies, pods):
    container_ports = {
        doc["spec"]["template"]["metadata"]["labels"][COMPONENT]: {
            port["containerPort"] for c in doc["spec"]["template"]["spec"]["containers"] for port in c.get("ports", [])
        }
        for doc in rendered
        if doc["kind"] in ("Deployment", "StatefulSet", "Job")
    }
    for policy in policies:
        for pod in pods:
            if selects(policy["spec"]["podSelector"], pod.labels):
                for rule in policy["spec"].get("ingress", []):
                    assert {p["port"] for p in rule["ports"]} <= container_ports[pod.name], (
                        policy["metadata"]["name"],
                        pod.name,
                    )


# --- The graph ---------------------------------------------------------------------------------------------------
def test_exactly_the_connections_the_service_needs_are_allowed(policies, pods):
    found = matrix(policies, pods)
    assert found - NEEDED == set(), "allowed, but nothing needs it"
    assert NEEDED - found == set(), "needed, but refused"


def test_the_guard_rails_by_name(policies, pods):
    by_name = {endpoint.name: endpoint for endpoint in pods + OUTSIDE}

    def can(source, destination, port, protocol="TCP"):
        return allowed(policies, by_name[source], by_name[destination], port, protocol)

    # The convert worker, which parses hostile media, takes no connection but Prometheus's scrape of its metrics port,
    # and sends no mail.
    assert not any(
        can(source, "convert-worker", port, protocol)
        for source in by_name
        for port, protocol in PORTS
        if source != "convert-worker" and (source, port) != ("prometheus", 9808)
    )
    # Prometheus reaches the metrics ports only: no store, no AMQP; nobody else in its namespace reaches them.
    assert can("prometheus", "convert-worker", 9808) and not can("grafana", "convert-worker", 9808)
    assert not any(can("prometheus", store, port) for store, port in (("mysql", 3306), ("rabbitmq", 5672)))
    assert not any(can("convert-worker", "internet", port) for port in (25, 443, 465, 587))
    # Only the two mail-sending roles reach SMTP, and only on mail ports; nobody reaches a private host.
    assert can("notify-worker", "internet", 587) and not can("notify-worker", "internet", 8000)
    assert not any(can(role, "internet", 587) for role in ("flower", "migrate", "mysql", "rabbitmq", "mongodb"))
    assert not any(can(pod.name, "private-host", port) for pod in pods for port, _ in MAIL)
    # KEDA and the ingress read the management API, never AMQP; no outsider reaches a database.
    assert can("keda", "rabbitmq", 15672) and not can("keda", "rabbitmq", 5672)
    assert can("ingress-nginx", "rabbitmq", 15672) and not can("ingress-nginx", "rabbitmq", 5672)
    assert not any(
        can(outsider.name, store, port)
        for outsider in OUTSIDE
        if outsider.namespace
        for store, port in (("mysql", 3306), ("mongodb", 27017))
    )
    # A pod labelled like web in another namespace is not web: it reaches nothing here.
    assert not can("other-namespace", "mysql", 3306) and not can("other-namespace", "web", 8000)
    # Only the fetch worker (URL imports) and the notify worker (webhooks) reach web servers outside, never a private
    # host; the fetch worker never by mail.
    assert {pod.name for pod in pods if any(can(pod.name, "internet", port) for port, _ in WEB)} == {
        "fetch-worker", "notify-worker"
    }
    assert not any(can(role, "private-host", port) for role in ("fetch-worker", "notify-worker") for port, _ in WEB)
    assert not can("fetch-worker", "internet", 25) and not can("fetch-worker", "internet", 587)
    # Flower reaches only the broker; the migrate Job only the database.
    assert not can("flower", "mysql", 3306) and not can("migrate", "rabbitmq", 5672)


def test_the_evaluator_notices_a_policy_that_opens_too_much(policies, pods):
    """Guards the matrix test: allowing everything out of the convert worker must show up as unneeded allowances."""
    opened = json.loads(json.dumps(policies))
    [convert] = [p for p in opened if p["metadata"]["name"] == "convert-worker"]
    convert["spec"]["egress"].append({})
    extra = matrix(opened, pods) - NEEDED
    assert ("convert-worker", "internet", 443, "TCP") in extra and ("convert-worker", "web", 8000, "TCP") not in extra
