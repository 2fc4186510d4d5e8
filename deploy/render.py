"""Render a kustomization to multi-document YAML, like `kubectl kustomize`, for the subset our manifests use.

    python deploy/render.py deploy/k8s/overlays/cpu            # prints the rendered YAML
    python deploy/render.py deploy/k8s/base > /tmp/base.yaml

`kubectl kustomize` (kustomize v5) is the reference; this renderer lets CI validate what would be applied without
depending on a kubectl binary. It implements:

- ``resources``: YAML files (multi-document) and folders holding their own kustomization;
- ``namespace`` (a Namespace object is renamed to it, cluster-scoped kinds are left alone);
- ``commonLabels`` and ``labels`` (``pairs``, ``includeSelectors``, ``includeTemplates``) on kustomize's field paths;
- ``images`` (``name``, ``newName``, ``newTag``, ``digest``) on every ``containers``/``initContainers`` list;
- ``configMapGenerator`` (``literals``, ``envs``, ``files``; ``behavior`` create/merge/replace), with kustomize's
  content-hash name suffix and references in pod specs rewritten to the suffixed name;
- ``patches``: strategic-merge patches (maps merged; ``null`` deletes a field; lists of containers, volumes, env,
  ports, ... merged by their Kubernetes merge key; ``$patch: delete|replace``) and JSON 6902 patches, given by
  ``path`` or inline ``patch``, applied to their own kind/name or to a ``target`` (name and kind are regexes).

Anything else (a field, directive or option not listed) is an error rather than a silently different result. Output
order and key order follow kustomize's (legacy kind order, sorted keys). Known differences: merge keys come from a
table of Kubernetes field names (MERGE_KEYS) rather than the OpenAPI schema, so a custom resource's list named like a
core one is merged the same way; `namespace` does not rewrite RoleBinding subjects.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "commonLabels",
        "labels",
        "images",
        "configMapGenerator",
        "patches",
    }
)
# Marks a ConfigMap made by configMapGenerator until the final name hash is applied; never printed.
GENERATED = "internal.render/generated"

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CSINode",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)

# Strategic-merge keys of list fields (the `x-kubernetes-patch-merge-key` of the Kubernetes API); other lists are
# replaced by the patch. `ports` is keyed by containerPort in containers and by port in Services.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "env": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
    "conditions": "type",
}

# kustomize's field specs for labels: (kinds, path, create-if-missing). `[]`-free paths walk through lists.
_WORKLOADS = frozenset({"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"})
_AFFINITY = (
    "spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm",
    "spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution",
    "spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm",
    "spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution",
    "spec/template/spec/topologySpreadConstraints",
)
SELECTOR_FIELDS: tuple[tuple[frozenset[str], str, bool], ...] = (
    (frozenset({"Service", "ReplicationController"}), "spec/selector", True),
    (_WORKLOADS, "spec/selector/matchLabels", True),
    *((frozenset({"Deployment", "StatefulSet"}), f"{p}/labelSelector/matchLabels", False) for p in _AFFINITY),
    (frozenset({"Job"}), "spec/selector/matchLabels", False),
    (frozenset({"CronJob"}), "spec/jobTemplate/spec/selector/matchLabels", False),
    (frozenset({"PodDisruptionBudget"}), "spec/selector/matchLabels", False),
    (frozenset({"NetworkPolicy"}), "spec/podSelector/matchLabels", False),
    (frozenset({"NetworkPolicy"}), "spec/ingress/from/podSelector/matchLabels", False),
    (frozenset({"NetworkPolicy"}), "spec/egress/to/podSelector/matchLabels", False),
)
TEMPLATE_FIELDS: tuple[tuple[frozenset[str], str, bool], ...] = (
    (_WORKLOADS | {"ReplicationController", "Job"}, "spec/template/metadata/labels", True),
    (frozenset({"StatefulSet"}), "spec/volumeClaimTemplates/metadata/labels", True),
    (frozenset({"CronJob"}), "spec/jobTemplate/metadata/labels", True),
    (frozenset({"CronJob"}), "spec/jobTemplate/spec/template/metadata/labels", True),
)

# kustomize's legacy output order: these kinds first (in this order), these last, everything else in between.
ORDER_FIRST = (
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


class KustomizeError(Exception):
    """The kustomization is invalid or uses something this renderer does not implement; the message says where."""


# --------------------------------------------------------------------------------------------------------------------
# Entry points


def render(root: Path) -> list[Resource]:
    """Render the kustomization in folder ``root``: the resources `kubectl kustomize root` would print."""
    resources = _build(root.resolve(), stack=())
    resources = _apply_name_hashes(resources)
    return sorted(resources, key=_legacy_order)


def dump(resources: list[Resource]) -> str:
    """Multi-document YAML, keys sorted like kustomize's output."""
    return yaml.dump_all(resources, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=10_000)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the rendered YAML; exit 1 with the reason on stderr if the kustomization cannot be rendered."""
    parser = argparse.ArgumentParser(description="Render a kustomization (subset of `kubectl kustomize`).")
    parser.add_argument("path", type=Path, help="folder holding a kustomization.yaml")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(dump(render(args.path)))
    except KustomizeError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------------------------------
# One kustomization


def _build(root: Path, stack: tuple[Path, ...]) -> list[Resource]:
    """Resources of one kustomization, transformed, but with generated names not yet hashed."""
    if root in stack:
        raise KustomizeError(f"{root}: kustomization includes itself via {' -> '.join(map(str, stack))}")
    kfile = _kustomization_file(root)
    spec = _load_mapping(kfile)
    unknown = sorted(set(spec) - SUPPORTED_FIELDS)
    if unknown:
        supported = ", ".join(sorted(SUPPORTED_FIELDS))
        raise KustomizeError(f"{kfile}: unsupported field(s) {', '.join(unknown)}; this renderer supports {supported}")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{kfile}: kind must be Kustomization, got {spec.get('kind')!r}")

    resources: list[Resource] = []
    for entry in _str_list(spec, "resources", kfile):
        if "://" in entry or entry.startswith("git@"):
            raise KustomizeError(f"{kfile}: remote resource {entry!r} is not supported")
        path = (root / entry).resolve()
        if path.is_dir():
            loaded = _build(path, (*stack, root))
        elif path.is_file():
            loaded = _load_resources(_inside(root, path, kfile))
        else:
            raise KustomizeError(f"{kfile}: resource {entry!r} does not exist")
        for resource in loaded:
            _add(resources, resource, kfile)

    for generator in spec.get("configMapGenerator") or []:
        _generate_config_map(resources, generator, root, kfile)
    for patch in spec.get("patches") or []:
        _apply_patch(resources, patch, root, kfile)
    if "namespace" in spec:
        _set_namespace(resources, str(spec["namespace"]))
    for pairs, selectors, templates in _label_sets(spec, kfile):
        for resource in resources:
            _add_labels(resource, pairs, selectors=selectors, templates=templates)
    for image in spec.get("images") or []:
        _set_image(resources, image, kfile)
    return resources


def _kustomization_file(root: Path) -> Path:
    if not root.is_dir():
        raise KustomizeError(f"{root}: not a folder")
    for name in KUSTOMIZATION_FILES:
        if (root / name).is_file():
            return root / name
    raise KustomizeError(f"{root}: no kustomization.yaml")


def _inside(root: Path, path: Path, kfile: Path) -> Path:
    """kustomize's default load restriction: files must lie within the kustomization's folder."""
    if not path.is_relative_to(root):
        raise KustomizeError(f"{kfile}: {path} is outside {root} (kustomize's LoadRestrictionsRootOnly)")
    return path


def _add(resources: list[Resource], resource: Resource, source: Path) -> None:
    rid = _resource_id(resource)
    if any(_resource_id(r) == rid for r in resources):
        raise KustomizeError(f"{source}: resource {rid} is defined twice")
    resources.append(resource)


# --------------------------------------------------------------------------------------------------------------------
# Loading


def _load_mapping(path: Path) -> dict[str, Any]:
    docs = _load_yaml(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise KustomizeError(f"{path}: expected one YAML mapping")
    return docs[0]


def _load_yaml(path: Path) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    except yaml.YAMLError as exc:
        raise KustomizeError(f"{path}: invalid YAML: {exc}") from exc


def _load_resources(path: Path) -> list[Resource]:
    resources = []
    for doc in _load_yaml(path):
        if not isinstance(doc, dict):
            raise KustomizeError(f"{path}: every document must be a Kubernetes object, got {type(doc).__name__}")
        items = (doc.get("items") or []) if doc.get("kind") == "List" else [doc]
        for item in items:
            for field in ("apiVersion", "kind"):
                if not isinstance(item.get(field), str):
                    raise KustomizeError(f"{path}: a document has no {field}")
            if not isinstance((item.get("metadata") or {}).get("name"), str):
                raise KustomizeError(f"{path}: {item['kind']} has no metadata.name")
            resources.append(item)
    return resources


def _str_list(spec: dict[str, Any], field: str, kfile: Path) -> list[str]:
    value = spec.get(field) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise KustomizeError(f"{kfile}: {field} must be a list of strings")
    return value


# --------------------------------------------------------------------------------------------------------------------
# Identity and order


def _group_version(resource: Resource) -> tuple[str, str]:
    api_version = str(resource["apiVersion"])
    group, _, version = api_version.rpartition("/")
    return group, version


def _resource_id(resource: Resource) -> str:
    group, version = _group_version(resource)
    meta = resource.get("metadata") or {}
    return f"{group or '~G'}_{version}_{resource['kind']}|{meta.get('namespace') or '~X'}|{meta.get('name')}"


def _legacy_order(resource: Resource) -> tuple[int, str, str]:
    kind = str(resource["kind"])
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind) - len(ORDER_FIRST)
    elif kind in ORDER_LAST:
        rank = ORDER_LAST.index(kind) + 1
    else:
        rank = 0
    group, version = _group_version(resource)
    gvk = f"{group or '~G'}_{version or '~V'}_{kind}"
    meta = resource["metadata"]
    namespace = "_non_namespaceable_" if kind in CLUSTER_SCOPED_KINDS else (meta.get("namespace") or "default")
    return rank, gvk, f"{gvk}|{namespace}|{meta['name']}"


# --------------------------------------------------------------------------------------------------------------------
# configMapGenerator and name hashes


def _generate_config_map(resources: list[Resource], generator: Any, root: Path, kfile: Path) -> None:
    allowed = {"name", "namespace", "behavior", "literals", "envs", "files"}
    if not isinstance(generator, dict) or not isinstance(generator.get("name"), str):
        raise KustomizeError(f"{kfile}: each configMapGenerator needs a name")
    unknown = sorted(set(generator) - allowed)
    if unknown:
        raise KustomizeError(f"{kfile}: configMapGenerator {generator['name']}: unsupported field(s) {unknown}")
    name = generator["name"]
    data: dict[str, str] = {}
    for env_file in _str_list(generator, "envs", kfile):
        data.update(_read_env_file(_inside(root, (root / env_file).resolve(), kfile)))
    for literal in _str_list(generator, "literals", kfile):
        key, sep, value = literal.partition("=")
        if not sep or not key:
            raise KustomizeError(f"{kfile}: configMapGenerator {name}: literal {literal!r} is not KEY=VALUE")
        data[key] = _unquote(value)
    for source in _str_list(generator, "files", kfile):
        key, sep, file_name = source.partition("=")
        if not sep:
            key, file_name = Path(source).name, source
        data[key] = _inside(root, (root / file_name).resolve(), kfile).read_text(encoding="utf-8")

    behavior = generator.get("behavior", "create")
    existing = [
        r
        for r in resources
        if r["kind"] == "ConfigMap"
        and r["metadata"]["name"] == name
        and ("namespace" not in generator or r["metadata"].get("namespace") == generator["namespace"])
    ]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"{kfile}: ConfigMap {name} already exists; use behavior: merge or replace")
        metadata: dict[str, Any] = {"name": name, "annotations": {GENERATED: "true"}}
        if "namespace" in generator:
            metadata["namespace"] = generator["namespace"]
        resources.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    elif behavior in ("merge", "replace"):
        if len(existing) != 1:
            raise KustomizeError(f"{kfile}: behavior {behavior} needs exactly one ConfigMap {name} from a base")
        target = existing[0]
        target["data"] = {**(target.get("data") or {}), **data} if behavior == "merge" else data
    else:
        raise KustomizeError(f"{kfile}: configMapGenerator {name}: unknown behavior {behavior!r}")


def _read_env_file(path: Path) -> dict[str, str]:
    """kustomize's env-file rules: `KEY=VALUE` lines taken verbatim; blank lines and `#` comments skipped."""
    data: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", key):
            raise KustomizeError(f"{path}:{number}: {key!r} is not a valid key name")
        if not sep:
            raise KustomizeError(f"{path}:{number}: {key} has no `=` (values from the environment are unsupported)")
        data[key] = value
    return data


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _config_map_hash(data: dict[str, str]) -> str:
    """kustomize's ConfigMap name suffix: sha256 of the Go-JSON encoding of {data, kind, name}, 10 hex chars with
    0, 1, 3, a, e remapped. kustomize v5 looks the name up with a path it never finds, so it always hashes an empty
    name: only the data decides the suffix. Same here, so both renderers print the same names."""
    encoded = json.dumps(
        {"data": data, "kind": "ConfigMap", "name": ""}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        encoded = encoded.replace(char, escape)
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _apply_name_hashes(resources: list[Resource]) -> list[Resource]:
    renamed: dict[tuple[str | None, str], str] = {}
    for resource in resources:
        annotations = resource["metadata"].get("annotations") or {}
        if annotations.pop(GENERATED, None) is None:
            continue
        if not annotations:
            del resource["metadata"]["annotations"]
        meta = resource["metadata"]
        hashed = f"{meta['name']}-{_config_map_hash(resource.get('data') or {})}"
        renamed[(meta.get("namespace"), meta["name"])] = hashed
        meta["name"] = hashed
    if renamed:
        for resource in resources:
            if resource["kind"] != "ConfigMap":
                namespace = resource["metadata"].get("namespace")
                for ref in _config_map_refs(resource):
                    ref["name"] = renamed.get((namespace, ref["name"]), ref["name"])
    return resources


def _config_map_refs(node: Any) -> Iterator[dict[str, Any]]:
    """Every `{name: ...}` that names a ConfigMap in a pod spec: envFrom, env valueFrom, volumes, projections."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("configMapRef", "configMapKeyRef", "configMap") and isinstance(value, dict) and "name" in value:
                yield value
            yield from _config_map_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _config_map_refs(item)


# --------------------------------------------------------------------------------------------------------------------
# patches


def _apply_patch(resources: list[Resource], entry: Any, root: Path, kfile: Path) -> None:
    if not isinstance(entry, dict):
        raise KustomizeError(f"{kfile}: each patches entry must be a mapping with path or patch")
    unknown = sorted(set(entry) - {"path", "patch", "target"})
    if unknown:
        raise KustomizeError(f"{kfile}: patches entry: unsupported field(s) {unknown}")
    if ("path" in entry) == ("patch" in entry):
        raise KustomizeError(f"{kfile}: a patches entry needs exactly one of path and patch")
    if "path" in entry:
        source = _inside(root, (root / str(entry["path"])).resolve(), kfile)
        label = str(source)
        docs = _load_yaml(source)
    else:
        label = f"{kfile} (inline patch)"
        try:
            docs = [d for d in yaml.safe_load_all(str(entry["patch"])) if d is not None]
        except yaml.YAMLError as exc:
            raise KustomizeError(f"{label}: invalid YAML: {exc}") from exc
    target = entry.get("target")

    if len(docs) == 1 and isinstance(docs[0], list):
        if target is None:
            raise KustomizeError(f"{label}: a JSON 6902 patch needs a target")
        for resource in _matching(resources, target, label):
            resources[_position(resources, resource)] = _json6902(resource, docs[0], label)
        return
    for doc in docs:
        if not isinstance(doc, dict):
            raise KustomizeError(f"{label}: a strategic-merge patch must be a mapping")
        matched = _same_object(resources, doc, label) if target is None else _matching(resources, target, label)
        for resource in matched:
            index = _position(resources, resource)
            merged = _merge_map(resource, doc, path="")
            if merged is None:
                del resources[index]
                continue
            if target is not None:  # a targeted patch's own apiVersion, kind and name never rename the resource
                merged.update(apiVersion=resource["apiVersion"], kind=resource["kind"])
                merged["metadata"]["name"] = resource["metadata"]["name"]
            resources[index] = merged


def _position(resources: list[Resource], resource: Resource) -> int:
    return next(i for i, r in enumerate(resources) if r is resource)


def _same_object(resources: list[Resource], patch: dict[str, Any], label: str) -> list[Resource]:
    """The resource a target-less strategic-merge patch names: same group, kind, name (and namespace if given)."""
    meta = patch.get("metadata") or {}
    if not isinstance(patch.get("apiVersion"), str) or not isinstance(patch.get("kind"), str) or "name" not in meta:
        raise KustomizeError(f"{label}: a patch without target needs apiVersion, kind and metadata.name")
    group = _group_version(patch)[0]
    matched = [
        r
        for r in resources
        if (_group_version(r)[0], r["kind"], r["metadata"]["name"]) == (group, patch["kind"], meta["name"])
        and meta.get("namespace") in (None, r["metadata"].get("namespace"))
    ]
    if not matched:
        raise KustomizeError(f"{label}: no resource matches {patch['kind']} {meta['name']}")
    return matched


def _matching(resources: list[Resource], target: Any, label: str) -> list[Resource]:
    """Resources selected by a patch target; each field given is an anchored regex, as in kustomize."""
    if not isinstance(target, dict):
        raise KustomizeError(f"{label}: target must be a mapping")
    unknown = sorted(set(target) - {"group", "version", "kind", "name", "namespace"})
    if unknown:
        raise KustomizeError(f"{label}: target: unsupported field(s) {unknown}")

    def selected(resource: Resource) -> bool:
        group, version = _group_version(resource)
        actual = {
            "group": group,
            "version": version,
            "kind": resource["kind"],
            "name": resource["metadata"]["name"],
            "namespace": resource["metadata"].get("namespace") or "",
        }
        return all(
            value in (None, "") or re.fullmatch(str(value), actual[field]) is not None
            for field, value in target.items()
        )

    matched = [r for r in resources if selected(r)]
    if not matched:
        raise KustomizeError(f"{label}: no resource matches {target}")
    return matched


def _merge_map(original: dict[str, Any], patch: dict[str, Any], path: str) -> dict[str, Any] | None:
    """Strategic merge of ``patch`` into ``original`` (both left untouched); None means `$patch: delete`."""
    directive = patch.get("$patch", "merge")
    body = {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive == "replace":
        return _merge_map({}, body, path) or {}
    if directive != "merge":
        raise KustomizeError(f"patch at {path or '/'}: unknown $patch directive {directive!r}")
    result = copy.deepcopy(original)
    for key, value in body.items():
        where = f"{path}/{key}"
        if key.startswith("$"):
            raise KustomizeError(f"patch at {where}: directive {key} is not supported")
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            merged = _merge_map(current if isinstance(current, dict) else {}, value, where)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            current = result.get(key)
            result[key] = _merge_list(key, current if isinstance(current, list) else [], value, where)
        else:
            result[key] = value
    return result


def _merge_list(field: str, original: list[Any], patch: list[Any], path: str) -> list[Any]:
    """Lists with a merge key are merged item by item (kustomize puts the patch's items first, then the
    original's untouched ones); other lists are replaced."""
    items = [i for i in patch if not (isinstance(i, dict) and i == {"$patch": "replace"})]
    replace = len(items) != len(patch)
    key = MERGE_KEYS.get(field)
    if field == "ports":
        in_container = any(isinstance(i, dict) and "containerPort" in i for i in [*original, *items])
        key = "containerPort" if in_container else "port"
    if replace or key is None or not all(isinstance(i, dict) for i in items):
        return [_merge_map({}, i, path) if isinstance(i, dict) else i for i in items]

    merged: list[Any] = []
    touched = set()
    for item in items:
        if key not in item:
            raise KustomizeError(f"patch at {path}: list item has no merge key {key!r}")
        touched.add(item[key])
        current = next((o for o in original if isinstance(o, dict) and o.get(key) == item[key]), {})
        result = _merge_map(current, item, f"{path}[{key}={item[key]}]")
        if result is not None:
            merged.append(result)
    return merged + [o for o in original if not (isinstance(o, dict) and o.get(key) in touched)]


def _json6902(resource: Resource, operations: list[Any], label: str) -> Resource:
    document: Any = copy.deepcopy(resource)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise KustomizeError(f"{label}: each JSON 6902 operation needs op and path")
        kind, path = op["op"], str(op["path"])
        if kind == "test":
            if _pointer_get(document, path, label) != op.get("value"):
                raise KustomizeError(f"{label}: test failed at {path}")
        elif kind == "remove":
            _pointer_remove(document, path, label)
        elif kind in ("add", "replace"):
            if "value" not in op:
                raise KustomizeError(f"{label}: {kind} at {path} needs a value")
            if kind == "replace":
                _pointer_remove(document, path, label)
            document = _pointer_add(document, path, copy.deepcopy(op["value"]), label)
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_pointer_get(document, str(op.get("from")), label))
            if kind == "move":
                _pointer_remove(document, str(op["from"]), label)
            document = _pointer_add(document, path, value, label)
        else:
            raise KustomizeError(f"{label}: unknown JSON 6902 op {kind!r}")
    if not isinstance(document, dict):
        raise KustomizeError(f"{label}: the patch replaced the whole resource with a non-object")
    return document


def _pointer_parts(path: str, label: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"{label}: JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _pointer_get(document: Any, path: str, label: str) -> Any:
    return _walk_pointer(document, _pointer_parts(path, label), path, label)


def _walk_pointer(node: Any, parts: list[str], path: str, label: str) -> Any:
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KustomizeError(f"{label}: path {path} does not exist")
    return node


def _pointer_remove(document: Any, path: str, label: str) -> None:
    parts = _pointer_parts(path, label)
    if not parts:
        raise KustomizeError(f"{label}: cannot remove the whole resource")
    parent = _walk_pointer(document, parts[:-1], path, label)
    _walk_pointer(parent, parts[-1:], path, label)  # must exist
    if isinstance(parent, dict):
        del parent[parts[-1]]
    else:
        del parent[int(parts[-1])]


def _pointer_add(document: Any, path: str, value: Any, label: str) -> Any:
    parts = _pointer_parts(path, label)
    if not parts:
        return value
    parent, last = _walk_pointer(document, parts[:-1], path, label), parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and (last == "-" or (last.isdigit() and int(last) <= len(parent))):
        parent.insert(len(parent) if last == "-" else int(last), value)
    else:
        raise KustomizeError(f"{label}: cannot add at {path}")
    return document


# --------------------------------------------------------------------------------------------------------------------
# namespace, labels, images


def _set_namespace(resources: list[Resource], namespace: str) -> None:
    for resource in resources:
        if resource["kind"] == "Namespace":
            resource["metadata"]["name"] = namespace
        elif resource["kind"] not in CLUSTER_SCOPED_KINDS:
            resource["metadata"]["namespace"] = namespace


def _label_sets(spec: dict[str, Any], kfile: Path) -> list[tuple[dict[str, str], bool, bool]]:
    """(pairs, includeSelectors, includeTemplates) for commonLabels and each labels entry."""
    sets: list[tuple[dict[str, str], bool, bool]] = []
    if spec.get("commonLabels"):
        sets.append((_string_map(spec["commonLabels"], "commonLabels", kfile), True, True))
    for entry in spec.get("labels") or []:
        if not isinstance(entry, dict):
            raise KustomizeError(f"{kfile}: each labels entry must be a mapping")
        unknown = sorted(set(entry) - {"pairs", "includeSelectors", "includeTemplates"})
        if unknown:
            raise KustomizeError(f"{kfile}: labels entry: unsupported field(s) {unknown}")
        selectors = bool(entry.get("includeSelectors", False))
        templates = selectors or bool(entry.get("includeTemplates", False))
        sets.append((_string_map(entry.get("pairs") or {}, "labels.pairs", kfile), selectors, templates))
    return sets


def _string_map(value: Any, field: str, kfile: Path) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise KustomizeError(f"{kfile}: {field} values must be strings (quote numbers and booleans)")
    return {str(k): v for k, v in value.items()}


def _add_labels(resource: Resource, pairs: dict[str, str], *, selectors: bool, templates: bool) -> None:
    resource["metadata"].setdefault("labels", {}).update(pairs)
    fields = (SELECTOR_FIELDS if selectors else ()) + (TEMPLATE_FIELDS if templates else ())
    for kinds, path, create in fields:
        if resource["kind"] in kinds:
            for labels in _walk_path(resource, path.split("/"), create):
                labels.update(pairs)


def _walk_path(node: Any, parts: list[str], create: bool) -> Iterator[dict[str, Any]]:
    """The maps at ``parts`` below ``node``, stepping through every item of a list on the way."""
    if isinstance(node, list):
        for item in node:
            yield from _walk_path(item, parts, create)
        return
    if not isinstance(node, dict):
        return
    if not parts:
        yield node
        return
    head, rest = parts[0], parts[1:]
    if head not in node or node[head] is None:
        if not create:
            return
        node[head] = {}
    yield from _walk_path(node[head], rest, create)


def _set_image(resources: list[Resource], image: Any, kfile: Path) -> None:
    if not isinstance(image, dict) or not isinstance(image.get("name"), str):
        raise KustomizeError(f"{kfile}: each images entry needs a name")
    unknown = sorted(set(image) - {"name", "newName", "newTag", "digest"})
    if unknown:
        raise KustomizeError(f"{kfile}: images entry {image['name']}: unsupported field(s) {unknown}")
    for field in ("newName", "newTag", "digest"):
        if field in image and not isinstance(image[field], str):
            raise KustomizeError(f"{kfile}: images entry {image['name']}: quote {field} (YAML read it as a number)")
    for resource in resources:
        for container in _containers(resource):
            name, tag, digest = _split_image(str(container.get("image", "")))
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "newTag" in image or "digest" in image:
                tag, digest = image.get("newTag", ""), image.get("digest", "")
            container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _split_image(image: str) -> tuple[str, str, str]:
    """name, tag, digest of an image reference (a registry's `host:port/` is part of the name)."""
    slash = max(image.find("/"), 0)
    name, _, digest = image.partition("@")
    colon = name.find(":", slash)
    if colon < 0:
        return name, "", digest
    return name[:colon], name[colon + 1 :], digest


# --------------------------------------------------------------------------------------------------------------------
# Output


class _Dumper(yaml.SafeDumper):
    """Quotes strings that YAML 1.1 readers (kubectl's included) would take for booleans, e.g. `y`, `on`."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if value.lower() in {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


if __name__ == "__main__":
    sys.exit(main())
