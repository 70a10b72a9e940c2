#!/usr/bin/env python3
"""Renders a kustomization as `kustomize build` (v5) does, for the features deploy/k8s uses only.

    python3 tools/kustomize_lite.py deploy/k8s/overlays/cpu > rendered.yaml

kustomize is a Go program that none of our pinned toolchains ships, so `make lint` renders with
this instead, then validates the result (tools/check_k8s.py). What it supports, with kustomize's
semantics as of v5.8:

- `resources`: YAML files and directories holding a kustomization;
- `patches` with `path` only: a strategic-merge patch naming one object (apiVersion, kind,
  metadata.name). Maps merge; `null` deletes; lists of built-in kinds merge by their patch merge
  key for the fields in MERGE_KEYS, are replaced for those in REPLACED, and any other list is an
  error; lists of custom resources (no schema, as in kustomize) are replaced;
- `namespace` on namespaced objects;
- `labels` with `pairs` (and `includeSelectors: false`): added to metadata.labels only;
- `images`: `name` with `newName`, `newTag` or `digest`, in every containers/initContainers list;
- output in kustomize's default ("legacy") order.

Anything else (another field, a patch target, `$patch` directives, commonLabels, generators, …)
stops it with an error: extend it, and check the result against real kustomize, before using a
new feature in deploy/k8s.
"""

import copy
import os
import sys

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
FIELDS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}

# Patch merge keys of the built-in kinds' lists (k8s.io/api's patchMergeKey), by field name.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of the built-in kinds without a merge strategy: a patch replaces them.
REPLACED = {"args", "command", "tolerations", "envFrom"}
BUILTIN_API_VERSIONS = {
    "v1",
    "apps/v1",
    "batch/v1",
    "policy/v1",
    "networking.k8s.io/v1",
    "autoscaling/v2",
    "rbac.authorization.k8s.io/v1",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ClusterTriggerAuthentication",
}
# kustomize's legacy output order (api/internal/builtins/SortOrderTransformer.go).
ORDER_FIRST = [
    "Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition", "ServiceAccount",
    "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ConfigMap",
    "Secret", "Endpoints", "Service", "LimitRange", "PriorityClass", "PersistentVolume",
    "PersistentVolumeClaim", "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


class KustomizeError(Exception):
    pass


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        try:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            raise KustomizeError(f"{path}: not YAML: {e}") from e
    for doc in docs:
        if not isinstance(doc, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
    return docs


def resource_id(obj):
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace"), meta.get("name"))


def describe(obj):
    api, kind, ns, name = resource_id(obj)
    return f"{kind} {ns + '/' if ns else ''}{name} ({api})"


def build(directory):
    """The objects `kustomize build DIRECTORY` prints, in its order."""
    return sorted(_build(os.path.normpath(directory), []), key=_order)


def _build(directory, seen):
    if directory in seen:
        raise KustomizeError(f"{directory}: cycle through {' -> '.join(seen)}")
    path = next(
        (os.path.join(directory, n) for n in KUSTOMIZATION_FILES
         if os.path.isfile(os.path.join(directory, n))),
        None,
    )
    if path is None:
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    docs = load_documents(path)
    if len(docs) != 1:
        raise KustomizeError(f"{path}: expected one document")
    k = docs[0]
    unknown = set(k) - FIELDS
    if unknown:
        raise KustomizeError(f"{path}: unsupported field(s) {sorted(unknown)} (see {__file__})")
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        raise KustomizeError(f"{path}: not a kustomize.config.k8s.io/v1beta1 Kustomization")

    objects = []
    for entry in k.get("resources") or []:
        target = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(target):
            objects.extend(_build(target, seen + [directory]))
        elif os.path.isfile(target):
            for obj in load_documents(target):
                if not all(resource_id(obj)[i] for i in (0, 1, 3)):
                    raise KustomizeError(f"{target}: an object without apiVersion, kind or name")
                objects.append(obj)
        else:
            raise KustomizeError(f"{path}: resource {entry} does not exist")
    seen_ids = set()
    for obj in objects:
        if resource_id(obj) in seen_ids:
            raise KustomizeError(f"{path}: {describe(obj)} appears twice")
        seen_ids.add(resource_id(obj))

    for entry in k.get("patches") or []:
        if not isinstance(entry, dict) or set(entry) != {"path"}:
            raise KustomizeError(f"{path}: only `patches: [{{path: FILE}}]` is supported, not {entry}")
        patch_file = os.path.join(directory, entry["path"])
        patch_docs = load_documents(patch_file)
        if len(patch_docs) != 1:
            raise KustomizeError(f"{patch_file}: expected one strategic-merge patch")
        patch = patch_docs[0]
        api, kind, ns, name = resource_id(patch)
        matches = [
            o for o in objects
            if resource_id(o)[:2] == (api, kind) and resource_id(o)[3] == name
            and (ns is None or resource_id(o)[2] == ns)
        ]
        if len(matches) != 1:
            raise KustomizeError(f"{patch_file}: matches {len(matches)} objects, not one")
        builtin = api in BUILTIN_API_VERSIONS
        merged = _merge(matches[0], patch, builtin, f"{patch_file}:")
        objects[objects.index(matches[0])] = merged

    namespace = k.get("namespace")
    if namespace is not None:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace

    for entry in k.get("labels") or []:
        if not isinstance(entry, dict) or not set(entry) <= {"pairs", "includeSelectors"}:
            raise KustomizeError(f"{path}: labels entries take `pairs` (and includeSelectors: false)")
        if entry.get("includeSelectors"):
            raise KustomizeError(f"{path}: labels with includeSelectors are not supported")
        for obj in objects:
            labels = obj["metadata"].get("labels") or {}
            labels.update({str(a): str(b) for a, b in entry["pairs"].items()})
            obj["metadata"]["labels"] = labels

    for entry in k.get("images") or []:
        if not isinstance(entry, dict) or "name" not in entry or not set(entry) <= {
            "name", "newName", "newTag", "digest"
        }:
            raise KustomizeError(f"{path}: images entries take name, newName, newTag, digest")
        for obj in objects:
            _set_images(obj, entry)
    return objects


def _merge(dest, patch, builtin, where):
    """Strategic merge of `patch` into a copy of `dest`, as kyaml's merge2 does."""
    if isinstance(patch, dict):
        if any(str(key).startswith("$") for key in patch):
            raise KustomizeError(f"{where} patch directives ($patch, …) are not supported")
        if not isinstance(dest, dict):
            return copy.deepcopy(patch)
        out = copy.deepcopy(dest)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = _merge_field(key, out[key], value, builtin, f"{where}.{key}")
            else:
                out[key] = _merge_field(key, None, value, builtin, f"{where}.{key}")
        return out
    if isinstance(patch, list):
        raise KustomizeError(f"{where} a list outside a field")
    return patch


def _merge_field(key, dest, value, builtin, where):
    if not isinstance(value, list):
        return _merge(dest, value, builtin, where) if isinstance(value, dict) else value
    if not builtin or key in REPLACED:
        return copy.deepcopy(value)
    if key not in MERGE_KEYS:
        raise KustomizeError(f"{where}: how kustomize merges `{key}` is not known here")
    merge_key = MERGE_KEYS[key]
    out = copy.deepcopy(dest) if isinstance(dest, list) else []
    for item in value:
        if not isinstance(item, dict) or merge_key not in item:
            raise KustomizeError(f"{where}: every item needs its merge key `{merge_key}`")
        at = next((i for i, d in enumerate(out) if d.get(merge_key) == item[merge_key]), None)
        if at is None:
            out.append(_merge({}, item, builtin, where))
        else:
            out[at] = _merge(out[at], item, builtin, f"{where}[{item[merge_key]}]")
    return out


def _split_image(image):
    """name, tag, digest of an image reference (a registry port is part of the name)."""
    name, digest = image, None
    if "@" in name:
        name, digest = name.split("@", 1)
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


def _set_images(node, entry):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    if isinstance(container, dict) and isinstance(container.get("image"), str):
                        name, tag, digest = _split_image(container["image"])
                        if name != entry["name"]:
                            continue
                        name = entry.get("newName", name)
                        if "digest" in entry:
                            container["image"] = f"{name}@{entry['digest']}"
                            continue
                        tag = entry.get("newTag", tag)
                        suffix = f":{tag}" if tag else ""
                        suffix += f"@{digest}" if digest and "newTag" not in entry else ""
                        container["image"] = name + suffix
            else:
                _set_images(value, entry)
    elif isinstance(node, list):
        for item in node:
            _set_images(item, entry)


def _order(obj):
    kind = obj["kind"]
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind) - len(ORDER_FIRST)
    elif kind in ORDER_LAST:
        rank = 1 + ORDER_LAST.index(kind)
    else:
        rank = 0
    group, _, version = obj["apiVersion"].rpartition("/")
    gvk = f"{group or '~G'}_{version or '~V'}_{kind}"
    meta = obj["metadata"]
    return (rank, gvk, meta.get("namespace") or "~X", meta.get("name") or "~N")


def dump(objects):
    return "---\n".join(
        yaml.safe_dump(obj, sort_keys=False, default_flow_style=False) for obj in objects
    )


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        sys.stdout.write(dump(build(argv[1])))
    except KustomizeError as e:
        print(f"kustomize_lite: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
