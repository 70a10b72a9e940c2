#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/k8s; `make lint` runs it from target/lint-venv.

    target/lint-venv/bin/python tools/check_k8s.py [KUSTOMIZATION_DIR ...]

Without arguments: deploy/k8s/base and every deploy/k8s/overlays/*. Each is rendered with
tools/kustomize_lite.py, and every object must pass:

1. its schema, offline: the Kubernetes API's JSON schemas bundled in kubernetes-validate, strict
   (an unknown field is an error), for the oldest and newest Kubernetes in K8S_VERSIONS; KEDA's
   objects against the openAPIV3Schema of the CRDs vendored in tools/keda-crds (made strict the
   same way). A kind with neither schema is an error, never skipped.
2. what a schema cannot see, read from the sources they must agree with:
   - every OCRD_* variable (ConfigMap, Secret, container env) is a key of src/config.rs: ocrd
     refuses to start on an unknown one;
   - pods: non-root as the image's USER (the Dockerfiles), seccomp RuntimeDefault, no service
     account token, no privilege escalation, every capability dropped, a read-only root file
     system (except a container given an NVIDIA GPU: the NVIDIA Container Toolkit's hooks write
     to it), and data_dir and /tmp on volumes, data_dir below the mount point (ocrd chmods it);
   - listeners on the pod address and probes on the real paths and ports: serve /healthz on
     server.bind and /readyz on server.ops_bind, work both on worker.health_addr;
   - the work Deployment's terminationGracePeriodSeconds at least SHUTDOWN_MARGIN_SECS above
     worker.shutdown_grace_secs;
   - KEDA: the stream and consumer group of src/queue/redis.rs under redis.key_prefix, only
     parameters the redis-streams scaler reads, minReplicaCount >= 1, a target without
     `replicas`, and the Redis address of the example Secret's redis.url;
   - references resolve: ConfigMaps, Secrets and their keys (deploy/k8s/secret.example.yaml,
     whose values must all still be CHANGE-ME placeholders), service accounts, volumes, named
     ports, Service/PDB/NetworkPolicy selectors, Ingress backends, KEDA targets.
Every problem of every directory is listed; the exit status is 1 if there was any.
"""

import copy
import glob
import os
import re
import sys
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate.utils as kv
import referencing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kustomize_lite  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S_DIR = os.path.join(ROOT, "deploy", "k8s")
SECRET_EXAMPLE = os.path.join(K8S_DIR, "secret.example.yaml")
KEDA_CRDS = os.path.join(ROOT, "tools", "keda-crds")
K8S_VERSIONS = ["1.30", "1.37"]
SHUTDOWN_MARGIN_SECS = 15
PLACEHOLDER = "CHANGE-ME"
WORKLOAD_KINDS = {"Deployment", "Job", "StatefulSet", "DaemonSet"}
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

# What KEDA 2.20's redis-streams scaler reads (pkg/scalers/redis_streams_scaler.go and the
# redisConnectionInfo of redis_scaler.go): trigger metadata, and TriggerAuthentication params.
KEDA_REDIS_STREAMS_METADATA = {
    "stream", "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount",
    "activationLagCount", "databaseIndex", "enableTLS", "unsafeSsl",
    "address", "addresses", "host", "hosts", "port", "ports",
    "username", "password", "sentinelUsername", "sentinelPassword", "sentinelMaster",
    "addressFromEnv", "hostFromEnv", "portFromEnv", "usernameFromEnv", "passwordFromEnv",
    "sentinelUsernameFromEnv", "sentinelPasswordFromEnv", "sentinelMasterFromEnv",
}
KEDA_REDIS_AUTH_PARAMS = {
    "address", "addresses", "host", "hosts", "port", "ports", "username", "password",
    "sentinelUsername", "sentinelPassword", "sentinelMaster", "tls", "cert", "key",
    "keyPassword", "ca",
}


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


# --- what the sources say ---------------------------------------------------------------------

def config_keys():
    """Every key path of src/config.rs's Config (`server.bind`, `data_dir`, …)."""
    source = read("src/config.rs")
    structs = {}
    for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", source, re.S):
        structs[m.group(1)] = re.findall(r"^\s*pub (\w+): ([^,\n]+),", m.group(2), re.M)
    keys = set()

    def walk(struct, prefix):
        for field, ty in structs[struct]:
            ty = ty.strip().split("::")[-1]
            if ty in structs:
                walk(ty, prefix + field + ".")
            else:
                keys.add(prefix + field)

    walk("Config", "")
    return keys


def config_default(field):
    m = re.search(rf"^\s*{field}: (.+?),$", read("src/config.rs"), re.M)
    if not m:
        raise SystemExit(f"check_k8s: no default for {field} in src/config.rs")
    value = m.group(1)
    string = re.fullmatch(r'(?:PathBuf::from\()?"(.*)"(?:\.into\(\)|\))', value)
    return string.group(1) if string else value


def queue_names():
    source = read("src/queue/redis.rs")
    group = re.search(r'const GROUP: &str = "([^"]+)";', source)
    stream = re.search(r'stream: format!\("\{key_prefix\}([^"]+)"\)', source)
    if not (group and stream):
        raise SystemExit("check_k8s: the stream or group name moved in src/queue/redis.rs")
    return stream.group(1), group.group(1)


def image_facts(dockerfile):
    """USER uid and gid, and the ENV of the Dockerfile's last stage."""
    text = read(dockerfile).replace("\\\n", " ")
    last = text[text.rindex("\nFROM "):]
    user = re.findall(r"^USER (\d+):(\d+)\s*$", last, re.M)
    env = {}
    for line in re.findall(r"^ENV (.+)$", last, re.M):
        env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    if not user:
        raise SystemExit(f"check_k8s: {dockerfile} has no numeric USER")
    return int(user[-1][0]), int(user[-1][1]), env


def dockerfile_of(image):
    name = kustomize_lite._split_image(image)[0].rsplit("/", 1)[-1]
    return "deploy/docker/Dockerfile.gpu" if name == "ocrd-gpu" else "Dockerfile"


# --- schemas ----------------------------------------------------------------------------------

def _strict(node):
    """An apiextensions openAPIV3Schema node as a strict JSON Schema (as openapi2jsonschema
    --strict does): objects with properties take no others, int-or-string and nullable become
    JSON Schema types, descriptions and x-kubernetes-* extensions go."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("description", "nullable") or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in ("additionalProperties", "items", "not", "allOf", "anyOf", "oneOf"):
            out[key] = _strict(value)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def keda_validators():
    definitions = kv.schema_contents(
        f"kubernetes-json-schema/v{K8S_VERSIONS[-1]}.0-local-strict/_definitions.json",
        K8S_VERSIONS[-1],
    )
    registry = referencing.Resource.from_contents(definitions) @ referencing.Registry()
    validators = {}
    for path in sorted(glob.glob(os.path.join(KEDA_CRDS, "*.yaml"))):
        crd = kustomize_lite.load_documents(path)[0]
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
            schema["properties"]["kind"] = {"const": kind}
            schema["properties"]["metadata"] = {"$ref": OBJECT_META}
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft202012Validator(
                schema, registry=registry
            )
    return validators


_K8S_VALIDATORS = {}


def k8s_validator(obj, version):
    """The validator kubernetes_validate.utils.validate (1.37.0) builds for `obj`, strict, kept
    for the next object of its kind; None when it has no schema. (validate() raises only the
    best-matching error; this lists them all.)"""
    resolved = [v for v in kv.all_versions() if kv.major_minor(v) <= version][-1]
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj.get("apiVersion", ""))
    key = (resolved, obj.get("kind", "").lower(), api)
    if key not in _K8S_VALIDATORS:
        directory = f"kubernetes-json-schema/v{resolved}-local-strict"
        try:
            schema = kv.schema_contents(f"{directory}/{key[1]}-{api}.json", version)
        except FileNotFoundError:
            _K8S_VALIDATORS[key] = None
        else:
            definitions = kv.schema_contents(f"{directory}/_definitions.json", version)
            registry = referencing.Resource.from_contents(definitions) @ (
                referencing.Resource.from_contents(schema) @ referencing.Registry())
            _K8S_VALIDATORS[key] = jsonschema.Draft202012Validator(schema, registry=registry)
    return _K8S_VALIDATORS[key]


def schema_problems(obj, keda):
    where = kustomize_lite.describe(obj)
    validators = [("", keda[(obj.get("apiVersion"), obj.get("kind"))])] if (
        obj.get("apiVersion"), obj.get("kind")) in keda else [
        (f"Kubernetes {v}: ", k8s_validator(obj, v)) for v in K8S_VERSIONS]
    problems = []
    for label, validator in validators:
        if validator is None:
            problems.append(f"{where}: no schema in {label.rstrip(': ')} nor in tools/keda-crds")
            continue
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            path = ".".join(map(str, e.absolute_path)) or "(top)"
            problems.append(f"{where}: {label}{path}: {e.message}")
    return problems


# --- what schemas cannot see ------------------------------------------------------------------

class Checker:
    def __init__(self, objects, secrets, facts):
        self.objects = objects
        self.secrets = {s["metadata"]["name"]: s for s in secrets}
        self.facts = facts
        self.problems = []

    def fail(self, obj, message):
        self.problems.append(f"{kustomize_lite.describe(obj)}: {message}")

    def find(self, kind, name):
        return next((o for o in self.objects
                     if o["kind"] == kind and o["metadata"]["name"] == name), None)

    def pods(self):
        """(workload, pod spec, pod labels) of every workload."""
        for obj in self.objects:
            if obj["kind"] in WORKLOAD_KINDS:
                template = obj["spec"]["template"]
                yield obj, template["spec"], template.get("metadata", {}).get("labels", {})

    def selected(self, selector):
        """Pod specs whose labels match a selector's matchLabels."""
        match = (selector or {}).get("matchLabels", selector or {})
        return [(o, spec) for o, spec, labels in self.pods()
                if match and all(labels.get(k) == v for k, v in match.items())]

    def run(self):
        for obj in self.objects:
            check = getattr(self, "check_" + obj["kind"], None)
            if check:
                check(obj)
        for obj, spec, _ in self.pods():
            self.check_pod(obj, spec)
        return list(dict.fromkeys(self.problems))

    def check_ConfigMap(self, cm):
        for key in cm.get("data") or {}:
            self.check_variable(cm, key)

    def check_variable(self, obj, name):
        if name.startswith("OCRD_") and name != "OCRD_CONFIG":
            key = name[len("OCRD_"):].lower().replace("__", ".")
            if key not in self.facts["config_keys"]:
                self.fail(obj, f"{name} is no configuration key ({key}): ocrd would not start")

    def environment(self, obj, container):
        """The container's variables as ocrd sees them: image ENV < envFrom < env."""
        env = dict(image_facts(dockerfile_of(container["image"]))[2])
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                cm = self.find("ConfigMap", source["configMapRef"]["name"])
                if cm is None:
                    self.fail(obj, f"envFrom: no ConfigMap {source['configMapRef']['name']}")
                else:
                    env.update(cm.get("data") or {})
            elif "secretRef" in source:
                secret = self.secrets.get(source["secretRef"]["name"])
                if secret is None:
                    self.fail(obj, f"envFrom: no Secret {source['secretRef']['name']} in {SECRET_EXAMPLE}")
                else:
                    env.update(secret.get("stringData") or {})
            else:
                self.fail(obj, f"envFrom {source}: only configMapRef and secretRef are checked")
        for var in container.get("env") or []:
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                data = (self.secrets.get(ref["name"]) or {}).get("stringData") or {}
                if ref["key"] not in data:
                    self.fail(obj, f"env {var['name']}: no key {ref['key']} in Secret {ref['name']}")
                env[var["name"]] = data.get(ref["key"], "")
            else:
                env[var["name"]] = var.get("value", "")
        for name in env:
            self.check_variable(obj, name)
        return env

    def check_pod(self, obj, spec):
        if spec.get("automountServiceAccountToken") is not False:
            self.fail(obj, "automountServiceAccountToken must be false (ocrd never calls the API)")
        account = spec.get("serviceAccountName")
        if account and not self.find("ServiceAccount", account):
            self.fail(obj, f"no ServiceAccount {account}")
        psc = spec.get("securityContext") or {}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for container in (spec.get("initContainers") or []) + spec["containers"]:
            name = f"container {container['name']}"
            uid, gid, _ = image_facts(dockerfile_of(container["image"]))
            csc = container.get("securityContext") or {}
            sc = {**psc, **csc}
            if sc.get("runAsNonRoot") is not True:
                self.fail(obj, f"{name}: runAsNonRoot must be true")
            if (sc.get("runAsUser"), sc.get("runAsGroup")) != (uid, gid):
                self.fail(obj, f"{name}: must run as the image's USER {uid}:{gid}")
            if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                self.fail(obj, f"{name}: seccompProfile must be RuntimeDefault")
            if csc.get("allowPrivilegeEscalation") is not False:
                self.fail(obj, f"{name}: allowPrivilegeEscalation must be false")
            if csc.get("privileged"):
                self.fail(obj, f"{name}: must not be privileged")
            caps = csc.get("capabilities") or {}
            if caps.get("drop") != ["ALL"] or caps.get("add"):
                self.fail(obj, f"{name}: capabilities must drop ALL and add none")
            resources = container.get("resources") or {}
            gpu = any("nvidia.com/gpu" in (resources.get(part) or {}) for part in ("limits", "requests"))
            if csc.get("readOnlyRootFilesystem") is not True and not gpu:
                self.fail(obj, f"{name}: readOnlyRootFilesystem must be true")
            mounts = {}
            for mount in container.get("volumeMounts") or []:
                if mount["name"] not in volumes:
                    self.fail(obj, f"{name}: no volume {mount['name']}")
                mounts[mount["mountPath"].rstrip("/")] = volumes.get(mount["name"], {})
            env = self.environment(obj, container)
            data_dir = env.get("OCRD_DATA_DIR", config_default("data_dir"))
            for path, what in ((data_dir, "data_dir"), ("/tmp", "/tmp")):
                parents = [m for m in mounts if path == m or path.startswith(m + "/")]
                if not parents:
                    self.fail(obj, f"{name}: {what} ({path}) is on no volume")
                elif what == "data_dir" and data_dir.rstrip("/") in mounts:
                    self.fail(obj, f"{name}: data_dir ({path}) must be below its volume's mount "
                                   "point: ocrd makes it 0700, which the root of an emptyDir refuses")
            if obj["kind"] == "Deployment":
                self.check_listeners(obj, container, env)

    def check_listeners(self, obj, container, env):
        args = (container.get("command") or [])[1:] + (container.get("args") or [])
        role = next((a for a in args if a in ("serve", "work")), None)
        name = f"container {container['name']}"
        if role is None:
            self.fail(obj, f"{name}: neither `serve` nor `work`")
            return
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}

        def address(key, default):
            value = env.get(key, default)
            host, _, port = value.rpartition(":")
            if host.strip("[]") not in ("0.0.0.0", "::"):
                self.fail(obj, f"{name}: {key}={value} is not reachable by the kubelet and "
                               "Prometheus; bind 0.0.0.0")
            return int(port)

        if role == "serve":
            public = address("OCRD_SERVER__BIND", config_default("bind"))
            ops = address("OCRD_SERVER__OPS_BIND", "") if "OCRD_SERVER__OPS_BIND" in env else public
            expected = {"livenessProbe": ("/healthz", public), "readinessProbe": ("/readyz", ops),
                        "startupProbe": ("/healthz", public)}
        else:
            health = address("OCRD_WORKER__HEALTH_ADDR", config_default("health_addr"))
            expected = {"livenessProbe": ("/healthz", health), "readinessProbe": ("/readyz", health),
                        "startupProbe": ("/healthz", health)}
            grace = int(env.get("OCRD_WORKER__SHUTDOWN_GRACE_SECS",
                                config_default("shutdown_grace_secs")))
            period = obj["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
            if period < grace + SHUTDOWN_MARGIN_SECS:
                self.fail(obj, f"terminationGracePeriodSeconds {period} must be at least "
                               f"worker.shutdown_grace_secs ({grace}) + {SHUTDOWN_MARGIN_SECS}")
        for probe, (path, port) in expected.items():
            get = (container.get(probe) or {}).get("httpGet")
            if not get:
                self.fail(obj, f"{name}: no httpGet {probe}")
                continue
            actual = ports.get(get["port"], get["port"])
            if (get.get("path"), actual) != (path, port):
                self.fail(obj, f"{name}: {probe} must be GET {path} on port {port}, "
                               f"not {get.get('path')} on {actual}")

    def check_Service(self, svc):
        pods = self.selected(svc["spec"].get("selector"))
        if not pods:
            self.fail(svc, "its selector matches no pod template")
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for obj, spec in pods:
                names = {p.get("name") for c in spec["containers"] for p in c.get("ports") or []}
                numbers = {p["containerPort"] for c in spec["containers"] for p in c.get("ports") or []}
                if target not in names | numbers:
                    self.fail(svc, f"port {port.get('name')}: {target} is no port of {obj['metadata']['name']}")

    def check_Ingress(self, ing):
        for rule in ing["spec"].get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                backend = path["backend"]["service"]
                svc = self.find("Service", backend["name"])
                if svc is None:
                    self.fail(ing, f"no Service {backend['name']}")
                elif backend["port"].get("name") not in {p.get("name") for p in svc["spec"]["ports"]} \
                        and backend["port"].get("number") not in {p["port"] for p in svc["spec"]["ports"]}:
                    self.fail(ing, f"Service {backend['name']} has no port {backend['port']}")

    def check_PodDisruptionBudget(self, pdb):
        if not self.selected(pdb["spec"].get("selector")):
            self.fail(pdb, "its selector matches no pod template")

    def check_NetworkPolicy(self, policy):
        pods = self.selected(policy["spec"]["podSelector"])
        if not pods:
            self.fail(policy, "its podSelector matches no pod template")
        for rule in policy["spec"].get("ingress") or []:
            for port in rule.get("ports") or []:
                for obj, spec in pods:
                    names = {p.get("name") for c in spec["containers"] for p in c.get("ports") or []}
                    if isinstance(port.get("port"), str) and port["port"] not in names:
                        self.fail(policy, f"{obj['metadata']['name']} has no port {port['port']}")

    def check_ScaledObject(self, so):
        spec = so["spec"]
        if spec.get("minReplicaCount", 0) < 1:
            self.fail(so, "minReplicaCount must be at least 1: workers also run the reaper, the "
                          "reconciler, retention purges and webhook deliveries")
        if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
            self.fail(so, "minReplicaCount must not exceed maxReplicaCount (the CRD's rule)")
        ref = spec["scaleTargetRef"]
        target = self.find(ref.get("kind", "Deployment"), ref["name"])
        if target is None:
            self.fail(so, f"no {ref.get('kind', 'Deployment')} {ref['name']} to scale")
        elif "replicas" in target["spec"]:
            self.fail(so, f"{ref['name']} sets replicas, which every kubectl apply would reset")
        prefix = self.facts["key_prefix"]
        for trigger in spec["triggers"]:
            meta, name = trigger["metadata"], f"trigger {trigger.get('name', trigger['type'])}"
            if trigger["type"] != "redis-streams":
                continue
            unknown = set(meta) - KEDA_REDIS_STREAMS_METADATA
            if unknown:
                self.fail(so, f"{name}: the redis-streams scaler reads no {sorted(unknown)}")
            if meta.get("stream") != prefix + self.facts["stream"]:
                self.fail(so, f"{name}: stream must be {prefix + self.facts['stream']} "
                              "(redis.key_prefix + src/queue/redis.rs)")
            if meta.get("consumerGroup") != self.facts["group"]:
                self.fail(so, f"{name}: consumerGroup must be {self.facts['group']}")
            targets = [k for k in ("pendingEntriesCount", "lagCount") if k in meta]
            if len(targets) != 1 or not meta[targets[0]].isdigit() or int(meta[targets[0]]) < 1:
                self.fail(so, f"{name}: give one of pendingEntriesCount or lagCount, a whole "
                              "number (with both, KEDA uses the lag only)")
            url = (self.secrets.get("ocrd", {}).get("stringData") or {}).get("OCRD_REDIS__URL", "")
            parts = urlsplit(url)
            if meta.get("address") != f"{parts.hostname}:{parts.port or 6379}":
                self.fail(so, f"{name}: address {meta.get('address')} is not the host:port of the "
                              f"example Secret's OCRD_REDIS__URL")
            auth = trigger.get("authenticationRef")
            if auth and not self.find(auth.get("kind", "TriggerAuthentication"), auth["name"]):
                self.fail(so, f"{name}: no TriggerAuthentication {auth['name']}")

    def check_TriggerAuthentication(self, auth):
        for ref in auth["spec"].get("secretTargetRef") or []:
            if ref["parameter"] not in KEDA_REDIS_AUTH_PARAMS:
                self.fail(auth, f"parameter {ref['parameter']}: the Redis scalers read no such one")
            data = (self.secrets.get(ref["name"]) or {}).get("stringData") or {}
            if ref["key"] not in data:
                self.fail(auth, f"no key {ref['key']} in Secret {ref['name']} ({SECRET_EXAMPLE})")


def check_secret_example(secrets, keda):
    problems = []
    for secret in secrets:
        problems += schema_problems(secret, keda)
        if secret.get("kind") != "Secret" or "data" in secret:
            problems.append(f"{kustomize_lite.describe(secret)}: only Secrets with stringData here")
        for key, value in (secret.get("stringData") or {}).items():
            if PLACEHOLDER not in str(value):
                problems.append(f"{kustomize_lite.describe(secret)}: {key} must be a {PLACEHOLDER} "
                                "placeholder: no real secret belongs in the repository")
    return problems


def main(argv):
    directories = argv[1:] or [os.path.join(K8S_DIR, "base")] + sorted(
        glob.glob(os.path.join(K8S_DIR, "overlays", "*")))
    stream, group = queue_names()
    facts = {
        "config_keys": config_keys(),
        "key_prefix": config_default("key_prefix"),
        "stream": stream,
        "group": group,
    }
    keda = keda_validators()
    secrets = kustomize_lite.load_documents(SECRET_EXAMPLE)
    failed = False
    problems = check_secret_example(secrets, keda)
    for problem in problems:
        print(f"ERROR {problem}")
    failed |= bool(problems)
    rel = os.path.relpath(SECRET_EXAMPLE, ROOT)
    print(f"{'FAIL' if problems else 'ok  '} {rel}: {len(secrets)} Secrets")
    for directory in directories:
        rel = os.path.relpath(directory, ROOT)
        try:
            objects = kustomize_lite.build(directory)
        except kustomize_lite.KustomizeError as e:
            print(f"ERROR {rel}: {e}")
            failed = True
            continue
        problems = []
        for obj in objects:
            problems += schema_problems(obj, keda)
        local = copy.deepcopy(facts)
        cm = next((o for o in objects if o["kind"] == "ConfigMap"
                   and "OCRD_REDIS__KEY_PREFIX" in (o.get("data") or {})), None)
        if cm:
            local["key_prefix"] = cm["data"]["OCRD_REDIS__KEY_PREFIX"]
        # The checks below read fields as the schemas define them: only on valid objects.
        if not problems:
            problems += Checker(objects, secrets, local).run()
        for problem in problems:
            print(f"ERROR {rel}: {problem}")
        failed |= bool(problems)
        kinds = sorted({o["kind"] for o in objects})
        print(f"{'FAIL' if problems else 'ok  '} {rel}: {len(objects)} objects ({', '.join(kinds)}); "
              f"schemas of Kubernetes {' and '.join(K8S_VERSIONS)} (strict) and KEDA's CRDs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
