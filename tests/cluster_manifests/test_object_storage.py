"""The object-storage variant (cluster/object-storage/): the pipeline RayJob of
cluster/rayjob-pipeline.yaml without the shared volume. Locations come from the
ConfigMap `irgpt-storage` and credentials from the Secret `irgpt-s3`, both
through envFrom, the Secret by name only; each Ray pod caches fetched objects
in its own emptyDir."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess

import pytest
import yaml

from .kube_schema import REPO_ROOT, schema_errors
from .manifests import (
    OBJECT_STORAGE_DIR,
    REAL_CONFIG,
    SHARED_MOUNT,
    Doc,
    all_documents,
    cluster_rel,
    containers,
    documents,
    env_map,
    find_doc,
    manifest_files,
    pod_templates,
    quantity,
    worker_group,
)
from .test_security import looks_secret

VARIANT = "object-storage/rayjob-pipeline-s3.yaml"
SHARED = "rayjob-pipeline.yaml"
STORAGE_CONFIG = "object-storage/storage-config.yaml"
CONFIGMAP = "irgpt-storage"
SECRET = "irgpt-s3"
CACHE_ENV = "IRGPT_CACHE_DIR"  # irgpt.storage.CACHE_ENV
LOCATION_KEYS = {"IRGPT_RUN_ROOT", "IRGPT_DATA_DIR", "IRGPT_MODELS", "IRGPT_RAY_STORAGE"}
CREDENTIAL_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
STORE_URI = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s]+/\S+$")  # scheme://bucket/prefix
# What differs between the two pipeline RayJobs by design; everything else must not.
POD_FIELDS_ALLOWED_TO_DIFFER = ("volumes",)
CONTAINER_FIELDS_ALLOWED_TO_DIFFER = ("env", "envFrom", "volumeMounts")


def _variant() -> Doc:
    return find_doc(VARIANT)


def _configmap() -> dict:
    return find_doc(STORAGE_CONFIG).body


def _ray_templates(doc: Doc) -> list[tuple[str, dict]]:
    return [(w, t) for w, t in pod_templates(doc) if "Group" in w]


def _ray_container(template: dict) -> dict:
    return template["spec"]["containers"][0]


def _submitter(doc: Doc) -> dict:
    return doc.body["spec"]["submitterPodTemplate"]


RAY_PODS = _ray_templates(_variant())


# ------------------------------------------------------------ the files ----
def test_variant_files():
    names = {cluster_rel(p) for p in manifest_files() if p.is_relative_to(OBJECT_STORAGE_DIR)}
    assert names == {STORAGE_CONFIG, VARIANT}
    assert [(d.kind, d.name) for d in documents(OBJECT_STORAGE_DIR / "storage-config.yaml")] == [
        ("ConfigMap", CONFIGMAP)
    ]
    job = _variant()
    assert (job.kind, job.name) == ("RayJob", "irgpt-pipeline-s3")
    assert "rayClusterSpec" in job.body["spec"] and "clusterSelector" not in job.body["spec"]
    assert [w for w, _ in RAY_PODS] == [
        "spec.rayClusterSpec.headGroupSpec.template",
        "spec.rayClusterSpec.workerGroupSpecs[cpu-workers].template",
        "spec.rayClusterSpec.workerGroupSpecs[gpu-workers].template",
    ]


def test_variant_validates_against_crd(kuberay_crds):
    assert _variant().body["apiVersion"] == "ray.io/v1"
    assert schema_errors(_variant().body) == []


def test_configmap_is_well_formed():
    cm = _configmap()
    assert cm["apiVersion"] == "v1" and set(cm) == {"apiVersion", "kind", "metadata", "data"}
    data = cm["data"]
    # The API server takes only strings; envFrom needs variable names a shell can expand.
    assert all(isinstance(v, str) and v for v in data.values()), data
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) for k in data), sorted(data)
    assert LOCATION_KEYS <= set(data), f"missing {sorted(LOCATION_KEYS - set(data))}"
    for key in LOCATION_KEYS:
        assert STORE_URI.match(data[key]) and not data[key].startswith("file://"), (key, data[key])
    assert data.get("AWS_REGION"), "AWS_REGION (pyarrow's S3 client needs the bucket's region)"
    assert not [k for k in data if looks_secret(k)], "credentials belong in the Secret irgpt-s3"


# ------------------------------------------------------------- volumes ----
ALL_PODS = list(pod_templates(_variant()))


@pytest.mark.parametrize("where,template", ALL_PODS, ids=[w for w, _ in ALL_PODS])
def test_variant_mounts_no_pvc(where, template):
    pod = template["spec"]
    for volume in pod.get("volumes") or []:
        assert "persistentVolumeClaim" not in volume, f"{where}: volume {volume['name']} is a PVC"
        assert "ephemeral" not in volume, f"{where}: volume {volume['name']} claims storage"
    for _, container in containers(template):
        for mount in container.get("volumeMounts") or []:
            path = mount["mountPath"]
            assert path != SHARED_MOUNT and not path.startswith(SHARED_MOUNT + "/"), (where, path)
        for env in container.get("env") or []:
            value = str(env.get("value", ""))
            assert value != SHARED_MOUNT and not value.startswith(SHARED_MOUNT + "/"), (where, env)


def _cache(where: str, template: dict) -> tuple[str, float]:
    """(IRGPT_CACHE_DIR, its emptyDir's sizeLimit in bytes) of a Ray pod."""
    ray = _ray_container(template)
    env = env_map(ray)
    assert CACHE_ENV in env, f"{where}: no {CACHE_ENV}"
    cache = env[CACHE_ENV]["value"]
    mounts = {m["mountPath"]: m["name"] for m in ray.get("volumeMounts") or []}
    assert cache in mounts, f"{where}: nothing mounted at {CACHE_ENV}={cache}"
    volumes = {v["name"]: v for v in template["spec"].get("volumes") or []}
    empty_dir = volumes[mounts[cache]].get("emptyDir")
    assert empty_dir is not None, f"{where}: the cache must be pod-local (emptyDir)"
    assert empty_dir.get("medium") != "Memory", f"{where}: a RAM-backed cache counts as memory"
    assert "sizeLimit" in empty_dir, f"{where}: the cache needs a sizeLimit"
    assert env.get("HF_HOME", {}).get("value", "").startswith(cache + "/"), f"{where}: HF_HOME"
    assert env.get("HF_HUB_OFFLINE", {}).get("value") == "1", f"{where}: HF_HUB_OFFLINE"
    assert mounts.get("/dev/shm"), f"{where}: no /dev/shm volume for the object store"
    return cache, quantity(empty_dir["sizeLimit"])


def test_every_ray_pod_has_a_pod_local_cache_at_one_path():
    caches = {where: _cache(where, template) for where, template in RAY_PODS}
    assert len({path for path, _ in caches.values()}) == 1, f"one path on every pod: {caches}"
    sizes = {
        where.split("[")[-1].split("]")[0] if "[" in where else "head": size
        for where, (_, size) in caches.items()
    }
    # A model (InternVL2-8B ~16 GiB, each stage's start) + a dataset shard set.
    assert sizes["gpu-workers"] >= quantity("200Gi"), sizes
    assert 0 < sizes["cpu-workers"] <= sizes["gpu-workers"], sizes
    assert 0 < sizes["head"] <= sizes["gpu-workers"], sizes


# ------------------------------------------------- ConfigMap and Secret ----
@pytest.mark.parametrize("where,template", RAY_PODS, ids=[w for w, _ in RAY_PODS])
def test_every_ray_pod_reads_the_configmap_and_the_secret_by_name(where, template):
    ray = _ray_container(template)
    # Locations first (required: a missing ConfigMap keeps the pod from starting),
    # then the credentials (optional: IRSA / workload identity needs no Secret).
    assert ray.get("envFrom") == [
        {"configMapRef": {"name": CONFIGMAP}},
        {"secretRef": {"name": SECRET, "optional": True}},
    ], f"{where}: {ray.get('envFrom')}"
    # An `env` entry would override what envFrom brings.
    shadowed = set(env_map(ray)) & (
        set(_configmap()["data"]) | CREDENTIAL_KEYS | {"AWS_ENDPOINT_URL"}
    )
    assert not shadowed, f"{where}: env overrides {sorted(shadowed)}"
    assert not [n for n in env_map(ray) if n.startswith("AWS_")], (
        f"{where}: AWS_* set in the manifest"
    )


def test_submitter_reads_the_configmap_and_no_secret():
    """KubeRay runs the entrypoint through `bash -c` in the submitter: the submitter's
    shell expands ${IRGPT_*}, so it needs the ConfigMap; it never touches the store."""
    submitter = _submitter(_variant())
    (container,) = submitter["spec"]["containers"]
    assert container.get("envFrom") == [{"configMapRef": {"name": CONFIGMAP}}]
    # No secretRef / secretKeyRef / secret volume anywhere in its pod.
    assert "secret" not in yaml.safe_dump(submitter).lower()


def _secret_material(node, path=""):
    if isinstance(node, dict):
        if node.get("kind") == "Secret":
            yield f"{path}: a Secret object"
        for key, value in node.items():
            if key == "stringData" or (key in CREDENTIAL_KEYS and not isinstance(value, dict)):
                yield f"{path}.{key}"
            yield from _secret_material(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _secret_material(value, f"{path}[{i}]")


def test_no_secret_values_anywhere_in_cluster():
    found = [f"{d.label}{hit}" for d in all_documents() for hit in _secret_material(d.body)]
    text_hits = [
        f"{cluster_rel(p)}: {m.group(0)}"
        for p in manifest_files()
        for m in re.finditer(
            r"AWS_(?:ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)\s*[:=]\s*\S+", p.read_text()
        )
    ]
    assert not found and not text_hits, found + text_hits


def test_secret_material_is_detected():
    leaked = {"kind": "Secret", "stringData": {"AWS_SECRET_ACCESS_KEY": "x"}}
    assert len(list(_secret_material(leaked))) == 3
    assert list(_secret_material({"data": {"AWS_ACCESS_KEY_ID": "QUtJQQ=="}})) == [
        ".data.AWS_ACCESS_KEY_ID"
    ]
    assert not list(_secret_material(_variant().body))


# ---------------------------------------------------------- entrypoint ----
VAR = re.compile(r"\$\{?(\w+)")


def _entrypoint() -> str:
    return _variant().body["spec"]["entrypoint"]


def _overrides() -> dict[str, str]:
    args = shlex.split(_entrypoint())
    pairs = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    out = dict(p.split("=", 1) for p in pairs)
    assert len(out) == len(pairs), f"a key is set twice: {pairs}"
    return out


def test_entrypoint_is_the_shared_pipeline_plus_store_locations():
    shared = find_doc(SHARED).body["spec"]["entrypoint"]
    assert _entrypoint().startswith(shared + " --set "), "same command, locations added"
    variables = VAR.findall(_entrypoint())
    assert set(variables) <= set(_configmap()["data"]), f"not in {CONFIGMAP}: {variables}"
    # Every expansion stops the submission when its key is missing.
    assert len(re.findall(r"\$\{\w+:\?\}", _entrypoint())) == len(variables), _entrypoint()
    assert _overrides()["run.root"] == "${IRGPT_RUN_ROOT:?}"


def _expand(env: dict) -> subprocess.CompletedProcess:
    """The entrypoint as the submitter's bash expands it (KubeRay: `bash -c '... -- ENTRYPOINT ; ...'`)."""
    script = f'set -- {_entrypoint()} ; printf "%s\\n" "$@"'
    return subprocess.run(
        ["bash", "-c", script],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_entrypoint_expands_from_the_configmap():
    data = _configmap()["data"]
    done = _expand(data)
    assert done.returncode == 0, done.stderr
    args = done.stdout.splitlines()
    assert args[:2] == ["python", "jobs/pipeline.py"]
    assert f"run.root={data['IRGPT_RUN_ROOT']}" in args
    assert f"data.dir={data['IRGPT_DATA_DIR']}" in args
    assert f"train.storage_path={data['IRGPT_RAY_STORAGE']}" in args
    assert "$" not in done.stdout
    missing = _expand({k: v for k, v in data.items() if k != "IRGPT_RUN_ROOT"})
    assert missing.returncode != 0 and "IRGPT_RUN_ROOT" in missing.stderr


def _get(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted} not in {REAL_CONFIG.name}"
        node = node[part]
    return node


def _strings(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def test_no_local_path_of_the_real_config_survives():
    """Every path configs/internvl2-8b.yaml puts on the shared volume is overridden
    with a location in the store: the variant's pods have no shared path."""
    assert REAL_CONFIG.is_file(), f"{REAL_CONFIG.relative_to(REPO_ROOT)} is missing"
    cfg = yaml.safe_load(REAL_CONFIG.read_text())
    data = _configmap()["data"]
    for key, value in _overrides().items():
        assert isinstance(_get(cfg, key), str), f"--set {key}: overrides no path of the config"
        section, _, leaf = key.rpartition(".")
        _get(cfg, section)[leaf] = re.sub(r"\$\{(\w+):\?\}", lambda m: data[m.group(1)], value)
    local = [(k, v) for k, v in _strings(cfg) if v.startswith("/")]
    assert not local, f"local paths left (add a --set and a ConfigMap key): {local}"
    for key in ("run.root", "data.dir", "train.model", "train.storage_path"):
        assert STORE_URI.match(_get(cfg, key)), (key, _get(cfg, key))


# ------------------------------------- same job as the shared-volume one ----
def _differences(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else key
            if key not in a or key not in b:
                yield f"{sub}: only in {'the variant' if key in a else 'rayjob-pipeline.yaml'}"
            else:
                yield from _differences(a[key], b[key], sub)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {a!r} != {b!r}"


def _without_storage(body: dict) -> dict:
    """The RayJob minus what the two setups are allowed to differ in."""
    body = copy.deepcopy(body)
    del body["metadata"]["name"], body["spec"]["entrypoint"]
    for _, template in pod_templates(Doc(OBJECT_STORAGE_DIR, 0, body)):
        for field in POD_FIELDS_ALLOWED_TO_DIFFER:
            template["spec"].pop(field, None)
        for _, container in containers(template):
            for field in CONTAINER_FIELDS_ALLOWED_TO_DIFFER:
                container.pop(field, None)
    return body


def _by_name(items, drop) -> dict:
    return {i["name"]: i for i in items or [] if i["name"] not in drop}


def drift(variant: dict, shared: dict) -> list[str]:
    """Where the variant's job differs from rayjob-pipeline.yaml beyond the storage."""
    out = list(_differences(_without_storage(variant), _without_storage(shared)))
    pairs = zip(
        pod_templates(Doc(OBJECT_STORAGE_DIR, 0, variant)),
        pod_templates(Doc(OBJECT_STORAGE_DIR, 0, shared)),
    )
    for (where, v), (_, s) in pairs:
        # Volumes and env: the same apart from the cache (added) and the PVC (removed).
        out += _differences(
            _by_name(v["spec"].get("volumes"), {"irgpt-cache"}),
            _by_name(s["spec"].get("volumes"), {"irgpt-shared"}),
            f"{where}.volumes",
        )
        for (cw, vc), (_, sc) in zip(containers(v), containers(s)):
            out += _differences(
                _by_name(vc.get("env"), {CACHE_ENV, "HF_HOME"}),
                _by_name(sc.get("env"), {"HF_HOME"}),
                f"{where}.{cw}.env",
            )
            out += _differences(
                {
                    m["mountPath"]: m
                    for m in vc.get("volumeMounts") or []
                    if m["name"] != "irgpt-cache"
                },
                {
                    m["mountPath"]: m
                    for m in sc.get("volumeMounts") or []
                    if m["name"] != "irgpt-shared"
                },
                f"{where}.{cw}.volumeMounts",
            )
    return out


def test_same_job_and_worker_groups_as_the_shared_volume_pipeline():
    variant, shared = _variant().body, find_doc(SHARED).body
    assert drift(variant, shared) == []
    # The comparison covers what matters: the groups and their resources are in it.
    kept = _without_storage(variant)["spec"]["rayClusterSpec"]
    gpu = worker_group(kept, "gpu-workers")
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert [g["groupName"] for g in kept["workerGroupSpecs"]] == ["cpu-workers", "gpu-workers"]


def _gpu_pod(body):
    return worker_group(body["spec"]["rayClusterSpec"], "gpu-workers")["template"]["spec"]


def _gpu_limits(body):
    return _gpu_pod(body)["containers"][0]["resources"]["limits"]


def _cpu_group(body):
    return worker_group(body["spec"]["rayClusterSpec"], "cpu-workers")


def _head_pod(body):
    return body["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]


def _submitter_limits(body):
    return body["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["resources"]["limits"]


DRIFTS = {
    "gpu memory": lambda b: _gpu_limits(b).update(memory="64Gi"),
    "gpu count": lambda b: _gpu_limits(b).update({"nvidia.com/gpu": 2}),
    "cpu-workers maxReplicas": lambda b: _cpu_group(b).update(maxReplicas=4),
    "worker group renamed": lambda b: _cpu_group(b).update(groupName="cpus"),
    "runtime env": lambda b: b["spec"].update(runtimeEnvYAML="working_dir: /tmp\n"),
    "ttl": lambda b: b["spec"].update(ttlSecondsAfterFinished=60),
    "dshm size": lambda b: _head_pod(b)["volumes"][1]["emptyDir"].update(sizeLimit="1Gi"),
    "accelerator env": lambda b: _head_pod(b)["containers"][0]["env"][0].update(value="cuda"),
    "extra env": lambda b: _head_pod(b)["containers"][0]["env"].append({"name": "X", "value": "1"}),
    "tolerations": lambda b: _gpu_pod(b).pop("tolerations"),
    "submitter limits": lambda b: _submitter_limits(b).update(cpu="2"),
}


@pytest.mark.parametrize("name", DRIFTS)
def test_drift_from_the_shared_volume_pipeline_is_caught(name):
    variant = copy.deepcopy(_variant().body)
    DRIFTS[name](variant)
    assert drift(variant, find_doc(SHARED).body), f"{name}: not detected"
