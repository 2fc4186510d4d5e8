"""CI checks for the gateway overlay (deploy/k8s/overlays/gateway, components/gateway) and its image (issue #16).

    .venv/bin/pytest tests/deploy -q

test_manifests.py already renders the overlay, validates every object against the Kubernetes schemas and runs its
review. This module checks what the gateway adds: the smg arguments, parsed by smg's own parser (the `gateway`
extra), route by the session header to the API pods on their readiness path; the discovery selector, port and model
annotation match the API Deployment; the RBAC lets the gateway watch pods and nothing more; the image tag, the
Dockerfile and pyproject.toml name the same smg version. Each review check fails on a render broken on purpose.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.deploy.test_manifests import (
    APP,
    K8S,
    K8S_VERSION,
    ROOT,
    Doc,
    _container_env,
    _find,
    _pre_stop_seconds,
    _render,
    _run_hadolint,
    _selects,
)

OVERLAY = K8S / "overlays" / "gateway"
COMPONENT = K8S / "components" / "gateway"
GATEWAY_DOCKERFILE = ROOT / "deploy" / "gateway" / "Dockerfile"
GATEWAY = "sweetiechat-gateway"  # Deployment, container image, Service, ServiceAccount, Role, PDB
SESSION_HEADER = "x-session-id"  # the server's X-Session-Id (app/api/deps.py), lower-cased as smg matches it
ADMIN_SECRET = "sweetiechat-gateway-admin"  # created by hand from components/gateway/secret.example.yaml
SESSION_POLICIES = {"consistent_hashing", "manual"}  # the smg policies that route by --routing-key-headers
SHUTDOWN_MARGIN_S = 5


def _smg_args(argv: list[str]) -> Any:
    """smg's own parse of ``argv`` (``smg launch``'s arguments): what the gateway pod will run with."""
    try:
        from smg.launch_router import parse_router_args
    except ImportError:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail("smg is not installed: install the gateway extra (pip install -e '.[gateway]')")
        pytest.skip("smg is not installed: install the gateway extra (pip install -e '.[gateway]')")
    return parse_router_args(argv)


def _gateway_container(docs: list[Doc]) -> Doc:
    pod = _find(docs, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "gateway")


def _expanded_args(docs: list[Doc], container: Doc) -> list[str]:
    """The container args with ``$(VAR)`` replaced as the kubelet does: the namespace from the downward API, a
    placeholder for a Secret's value; an unknown variable stays as written (Kubernetes' rule too)."""
    namespace = _find(docs, "Deployment", GATEWAY)["metadata"]["namespace"]
    values: dict[str, str] = {}
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        if "value" in entry:
            values[entry["name"]] = entry["value"]
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            values[entry["name"]] = namespace
        elif "secretKeyRef" in source:
            values[entry["name"]] = "ops:operator:admin:from-the-secret"
    return [re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), m.group(0)), arg) for arg in container["args"]]


def _arg_value(args: list[str], flag: str) -> str | None:
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"{flag}=")), None)


def review_gateway(docs: list[Doc]) -> list[str]:
    """What the gateway needs from the render, as a list of problems (empty: fine)."""
    problems: list[str] = []
    gateway = _find(docs, "Deployment", GATEWAY)
    pod = gateway["spec"]["template"]["spec"]
    container = _gateway_container(docs)
    args = _smg_args(_expanded_args(docs, container))
    api = _find(docs, "Deployment", APP)
    api_template = api["spec"]["template"]
    api_container = next(c for c in api_template["spec"]["containers"] if c["name"] == APP)

    if args.policy not in SESSION_POLICIES:
        problems.append(f"policy {args.policy!r} does not route by session; use one of {sorted(SESSION_POLICIES)}")
    if SESSION_HEADER not in [h.lower() for h in args.routing_key_headers or []]:
        problems.append(f"--routing-key-headers does not name {SESSION_HEADER}: sessions are not kept on a replica")

    if args.selected_discovery_provider() != "kubernetes":
        problems.append("the gateway does not discover the API pods (--service-discovery)")
    if not _selects(args.selector, api_template["metadata"]["labels"]):
        problems.append(f"discovery selector {args.selector} does not select the API pods")
    if _selects(args.selector, gateway["spec"]["template"]["metadata"]["labels"]):
        problems.append("discovery selector also selects the gateway's own pods")
    if args.service_discovery_namespace != gateway["metadata"]["namespace"]:
        problems.append(f"discovery watches namespace {args.service_discovery_namespace!r}, not the gateway's own")
    api_ports = {p["containerPort"] for p in api_container["ports"]}
    if args.service_discovery_port not in api_ports:
        problems.append(f"discovery port {args.service_discovery_port} is not an API container port {api_ports}")

    kind, _, key = (args.model_id_from or "").partition(":")
    model = _container_env(docs, api_container).get("SWEETIE_MODEL")
    found = api_template["metadata"].get({"annotation": "annotations", "label": "labels"}.get(kind, ""), {}).get(key)
    if found is None or found != model:
        problems.append(f"--model-id-from {args.model_id_from!r} reads {found!r} on the API pods, not {model!r}")

    readiness = api_container.get("readinessProbe", {}).get("httpGet", {}).get("path")
    if args.health_check_endpoint != readiness:
        problems.append(f"health checks GET {args.health_check_endpoint}, not the API readiness path {readiness}")
    if not args.disable_retries:
        problems.append("retries are on: smg would resend a replica's 429/503 to other replicas")
    if not args.disable_circuit_breaker:
        problems.append("the circuit breaker is on: 503s (Redis down) would cut off healthy replicas")
    if not args.control_plane_api_keys:
        problems.append("no --control-plane-api-keys: anyone who reaches the gateway can register a backend")
    for entry in container.get("env", []):
        secret = entry.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
        if secret is not None and secret != ADMIN_SECRET:
            problems.append(f"env {entry['name']} reads Secret {secret}, which nothing creates")

    drain = int(_arg_value(container["args"], "--shutdown-grace-period-secs") or 180)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < _pre_stop_seconds(container) + drain + SHUTDOWN_MARGIN_S:
        problems.append(f"terminationGracePeriodSeconds {grace} < preStop + smg shutdown grace {drain} + margin")
    if gateway["spec"].get("replicas", 1) < 2:
        problems.append("one gateway pod: a single point of failure for every chat request")

    account = pod.get("serviceAccountName")
    if not any(d["kind"] == "ServiceAccount" and d["metadata"]["name"] == account for d in docs):
        problems.append(f"ServiceAccount {account} is not rendered")
    if pod.get("automountServiceAccountToken") is False:
        problems.append("no service account token: the pod watch cannot reach the Kubernetes API")
    bound = [
        b["roleRef"]["name"]
        for b in docs
        if b["kind"] == "RoleBinding" and any(s.get("name") == account for s in b.get("subjects", []))
    ]
    rules = [r for d in docs if d["kind"] == "Role" and d["metadata"]["name"] in bound for r in d["rules"]]
    if not any("pods" in r["resources"] and {"get", "list", "watch"} <= set(r["verbs"]) for r in rules):
        problems.append(f"ServiceAccount {account} may not get/list/watch pods")
    if any(set(r["verbs"]) - {"get", "list", "watch"} or set(r["resources"]) - {"pods"} for r in rules):
        problems.append(f"ServiceAccount {account} may do more than read pods")

    services = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == GATEWAY]
    if not services or not _selects(services[0]["spec"]["selector"], gateway["spec"]["template"]["metadata"]["labels"]):
        problems.append(f"no Service {GATEWAY} routes to the gateway pods")
    elif _selects(services[0]["spec"]["selector"], api_template["metadata"]["labels"]):
        problems.append(f"Service {GATEWAY} also routes to the API pods, around the gateway")

    hpa = _find(docs, "HorizontalPodAutoscaler", APP)
    if hpa["spec"].get("minReplicas", 1) < 2:
        problems.append("the API HPA may scale to one replica: nothing left to route between")
    return problems


def test_gateway_review_finds_no_problem() -> None:
    assert review_gateway(_render(OVERLAY)) == []


def test_gateway_routes_by_the_session_header_to_the_api_pods() -> None:
    """The rendered args, read directly: what a reviewer looks for first."""
    docs = _render(OVERLAY)
    args = _gateway_container(docs)["args"]
    assert "--policy=consistent_hashing" in args
    assert f"--routing-key-headers={SESSION_HEADER}" in args
    assert "--service-discovery" in args
    assert {a for a in args if a.startswith("--selector=")} == {
        "--selector=app.kubernetes.io/name=sweetiechat",
        "--selector=app.kubernetes.io/component=api",
    }
    assert "--health-check-endpoint=/ready" in args
    assert _find(docs, "Deployment", GATEWAY)["spec"]["replicas"] >= 2
    assert _find(docs, "HorizontalPodAutoscaler", APP)["spec"]["minReplicas"] >= 2


def test_gateway_image_dockerfile_and_pyproject_name_one_smg_version() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = extras["gateway"]
    version = pin.removeprefix("smg==")
    assert pin == f"smg=={version}"
    dockerfile = GATEWAY_DOCKERFILE.read_text()
    assert f"ARG SMG_VERSION={version}\n" in dockerfile
    assert '"smg==${SMG_VERSION}"' in dockerfile
    container = _gateway_container(_render(OVERLAY))
    assert container["image"] == f"{GATEWAY}:{version}"
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert re.search(r"EXTRAS=\$\{SWEETIE_EXTRAS:-[\w,]*\bgateway\b", install), "CI installs the gateway extra"


def test_gateway_dockerfile_passes_hadolint_and_runs_as_non_root() -> None:
    result = _run_hadolint(GATEWAY_DOCKERFILE)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"
    text = GATEWAY_DOCKERFILE.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["smg", "launch"]' in text


def test_admin_secret_example_matches_the_schema_and_is_not_rendered() -> None:
    import kubernetes_validate

    (secret,) = yaml.safe_load_all((COMPONENT / "secret.example.yaml").read_text())
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["metadata"]["name"] == ADMIN_SECRET
    key = secret["stringData"]["control-plane-api-keys"]
    assert len(key.split(":")) == 4 and key.split(":")[2] == "admin", "smg's format: id:name:role:key"
    assert "secret.example.yaml" not in yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())["resources"]
    assert not [d for d in _render(OVERLAY) if d["kind"] == "Secret"]


def _gateway_args(docs: list[Doc]) -> list[str]:
    args: list[str] = _gateway_container(docs)["args"]
    return args


def _replace_arg(docs: list[Doc], flag: str, value: str | None) -> None:
    """Set ``--flag=value`` (``None``: remove the flag) in the gateway container's args."""
    args = [a for a in _gateway_args(docs) if a != flag and not a.startswith(f"{flag}=")]
    _gateway_container(docs)["args"] = [*args, f"{flag}={value}"] if value is not None else args


def _api_annotations(docs: list[Doc]) -> dict[str, str]:
    annotations: dict[str, str] = _find(docs, "Deployment", APP)["spec"]["template"]["metadata"]["annotations"]
    return annotations


BREAKAGES: list[tuple[str, Callable[[list[Doc]], Any], str]] = [
    ("round-robin", lambda d: _replace_arg(d, "--policy", "round_robin"), "does not route by session"),
    ("no-routing-header", lambda d: _replace_arg(d, "--routing-key-headers", None), "does not name x-session-id"),
    (
        "selector-typo",
        lambda d: _replace_arg(d, "--selector", "app.kubernetes.io/name=sweetichat"),
        "does not select the API pods",
    ),
    ("discovery-port", lambda d: _replace_arg(d, "--service-discovery-port", "80"), "is not an API container port"),
    ("health-on-liveness", lambda d: _replace_arg(d, "--health-check-endpoint", "/health"), "not the API readiness"),
    ("model-annotation", lambda d: _api_annotations(d).pop("sweetiechat.io/model"), "--model-id-from"),
    ("retries", lambda d: _replace_arg(d, "--disable-retries", None), "retries are on"),
    ("open-control-plane", lambda d: _replace_arg(d, "--control-plane-api-keys", None), "can register a backend"),
    ("short-grace", lambda d: _replace_arg(d, "--shutdown-grace-period-secs", "60"), "terminationGracePeriodSeconds"),
    ("one-gateway", lambda d: _find(d, "Deployment", GATEWAY)["spec"].update(replicas=1), "single point of failure"),
    (
        "role-writes",
        lambda d: _find(d, "Role", GATEWAY)["rules"][0]["verbs"].append("delete"),
        "more than read pods",
    ),
    (
        "service-to-api",
        lambda d: _find(d, "Service", GATEWAY)["spec"].update(
            selector={"app.kubernetes.io/name": "sweetiechat", "app.kubernetes.io/component": "api"}
        ),
        f"no Service {GATEWAY} routes to the gateway pods",
    ),
]


@pytest.mark.parametrize(("breakage", "message"), [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES])
def test_gateway_review_catches_a_broken_manifest(breakage: Callable[[list[Doc]], Any], message: str) -> None:
    docs = _render(OVERLAY)
    breakage(docs)
    problems = review_gateway(docs)
    assert any(message in p for p in problems), problems
