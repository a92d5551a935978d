"""What the cluster/ manifests must agree on: GPUs vs the training world size,
shared storage, one image, runtime envs, and the two copies of the cluster spec."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from .kube_schema import REPO_ROOT
from .manifests import (
    CLUSTER_DIR,
    IMAGE_REPO_DIR,
    ISSUE_WORLD_SIZE,
    REAL_CONFIG,
    SHARED_MOUNT,
    all_containers,
    cluster_specs,
    docs_of_kind,
    env_map,
    find_doc,
    k8s_documents,
    pod_templates,
    quantity,
    runtime_env_of,
    uses_shared_volume,
    worker_group,
)

GPU = "nvidia.com/gpu"
CLUSTERS = [(f"{d.label} {w}", s) for d in k8s_documents() for w, s in cluster_specs(d)]
IDS = [w for w, _ in CLUSTERS]
RAY_TEMPLATES = [
    (f"{d.label} {w}", t) for d in k8s_documents() for w, t in pod_templates(d) if "Group" in w
]
# The Ray pods of the shared-volume setup (cluster/object-storage/ mounts no PVC:
# test_object_storage.py checks it).
SHARED_VOLUME_TEMPLATES = [
    (w, t)
    for d in k8s_documents()
    if uses_shared_volume(d)
    for w, t in RAY_TEMPLATES
    if w.startswith(d.label + " ")
]
CONTAINERS = list(all_containers())
RUNTIME_ENV_FIELDS = {  # ray.runtime_env.RuntimeEnv's documented fields
    "working_dir",
    "py_modules",
    "py_executable",
    "excludes",
    "pip",
    "uv",
    "conda",
    "container",
    "image_uri",
    "env_vars",
    "nsight",
    "config",
    "java_jars",
    "worker_process_setup_hook",
}
INSTALLERS = {"pip", "uv", "conda", "container", "image_uri"}  # would fetch at run time


def gpus(container: dict) -> int:
    limits = (container.get("resources") or {}).get("limits") or {}
    return int(quantity(limits.get(GPU, 0)))


def pod_gpus(template: dict) -> int:
    return sum(gpus(c) for c in template["spec"].get("containers", []))


def training_world() -> tuple[int, int, str]:
    """(total GPUs, GPUs per Ray Train worker, source) of the real-scale run."""
    if not REAL_CONFIG.is_file():
        return (
            ISSUE_WORLD_SIZE,
            1,
            "issue 8 (InternVL2-8B on 8 GPUs; configs/internvl2-8b.yaml absent)",
        )
    train = (yaml.safe_load(REAL_CONFIG.read_text()) or {}).get("train") or {}
    assert "num_workers" in train, f"{REAL_CONFIG.name} must set train.num_workers (the world size)"
    per_worker = train.get("gpus_per_worker") or (1 if train.get("use_gpu") else 0)
    assert per_worker > 0, (
        f"{REAL_CONFIG.name} trains without GPUs (train.use_gpu / gpus_per_worker)"
    )
    return train["num_workers"] * per_worker, per_worker, REAL_CONFIG.name


# ------------------------------------------------------------------ GPUs ----
@pytest.mark.parametrize("where,cluster", CLUSTERS, ids=IDS)
def test_gpu_workers_match_training_world_size(where, cluster):
    total, per_worker, source = training_world()
    group = worker_group(cluster, "gpu-workers")
    per_pod = pod_gpus(group["template"])
    assert per_pod >= 1 and per_pod % per_worker == 0, (
        f"{where}: {per_pod} GPU(s)/pod, {per_worker}/worker"
    )
    assert per_pod * group["replicas"] == total, (
        f"{where}: replicas x GPUs != {total} from {source}"
    )
    assert per_pod * group["maxReplicas"] == total, (
        f"{where}: maxReplicas x GPUs != {total} from {source}"
    )
    assert group["minReplicas"] == 0 and cluster.get("enableInTreeAutoscaling") is True


@pytest.mark.parametrize("where,cluster", CLUSTERS, ids=IDS)
def test_only_gpu_workers_have_gpus(where, cluster):
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"].get("num-gpus") == "0", (
        f"{where}: head must start with num-gpus 0"
    )
    assert pod_gpus(head["template"]) == 0, f"{where}: head requests a GPU"
    cpu = worker_group(cluster, "cpu-workers")
    assert pod_gpus(cpu["template"]) == 0, f"{where}: cpu-workers request a GPU"
    assert cpu["minReplicas"] <= cpu["replicas"] <= cpu["maxReplicas"]


@pytest.mark.parametrize("where,cluster", CLUSTERS, ids=IDS)
def test_deepspeed_accelerator_per_node_type(where, cluster):
    def accel(template):
        return env_map(template["spec"]["containers"][0]).get("DS_ACCELERATOR", {}).get("value")

    assert accel(cluster["headGroupSpec"]["template"]) == "cpu", where
    assert accel(worker_group(cluster, "cpu-workers")["template"]) == "cpu", where
    assert accel(worker_group(cluster, "gpu-workers")["template"]) == "cuda", where


@pytest.mark.parametrize("where,container,template", CONTAINERS, ids=[w for w, *_ in CONTAINERS])
def test_containers_have_sane_resources(where, container, template):
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    assert {"cpu", "memory"} <= set(limits), (
        f"{where}: cpu and memory limits (KubeRay sizes Ray from them)"
    )
    for name, req in requests.items():
        if name in limits:
            assert quantity(req) <= quantity(limits[name]), f"{where}: {name} request > limit"
    if GPU in requests:  # extended resources cannot be overcommitted
        assert quantity(requests[GPU]) == quantity(limits.get(GPU, -1)), (
            f"{where}: GPU request != limit"
        )


# --------------------------------------------------------------- storage ----
def test_pvc_is_read_write_many():
    (pvc,) = docs_of_kind("PersistentVolumeClaim")
    assert "ReadWriteMany" in pvc.body["spec"]["accessModes"]


def test_shared_volume_templates_are_selected():
    """The PVC check below covers raycluster.yaml and rayjob-pipeline.yaml (3 Ray pods
    each), not the object-storage variant."""
    labels = {w.split(" ")[0].split("#")[0] for w, _ in SHARED_VOLUME_TEMPLATES}
    assert labels == {"cluster/raycluster.yaml", "cluster/rayjob-pipeline.yaml"}
    assert len(SHARED_VOLUME_TEMPLATES) == 6


@pytest.mark.parametrize(
    "where,template", SHARED_VOLUME_TEMPLATES, ids=[w for w, _ in SHARED_VOLUME_TEMPLATES]
)
def test_every_ray_pod_mounts_the_shared_pvc(where, template):
    (pvc,) = docs_of_kind("PersistentVolumeClaim")
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    claims = {
        n
        for n, v in volumes.items()
        if (v.get("persistentVolumeClaim") or {}).get("claimName") == pvc.name
    }
    assert claims, f"{where}: does not use PVC {pvc.name}"
    ray = template["spec"]["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in ray.get("volumeMounts", [])}
    assert mounts.get(SHARED_MOUNT) in claims, f"{where}: PVC not mounted at {SHARED_MOUNT}"
    assert mounts.get("/dev/shm"), f"{where}: no /dev/shm volume for the object store"
    env = env_map(ray)
    assert env.get("HF_HOME", {}).get("value", "").startswith(SHARED_MOUNT + "/"), (
        f"{where}: HF_HOME"
    )
    assert env.get("HF_HUB_OFFLINE", {}).get("value") == "1", f"{where}: HF_HUB_OFFLINE"


def test_real_config_writes_to_shared_storage():
    """Every node reads and writes the run directory: it must be on the PVC
    (or, for Ray Train's storage, a bucket)."""
    assert REAL_CONFIG.is_file(), f"{REAL_CONFIG.relative_to(REPO_ROOT)} is missing"
    cfg = yaml.safe_load(REAL_CONFIG.read_text()) or {}
    root = (cfg.get("run") or {}).get("root", "runs")
    assert str(root).startswith(SHARED_MOUNT + "/"), (
        f"run.root {root!r} is not under {SHARED_MOUNT}"
    )
    data_dir = (cfg.get("data") or {}).get("dir")
    assert data_dir and str(data_dir).startswith(SHARED_MOUNT + "/"), f"data.dir {data_dir!r}"
    storage = (cfg.get("train") or {}).get("storage_path")
    assert storage is None or re.match(rf"({re.escape(SHARED_MOUNT)}/|s3://|gs://)", storage), (
        storage
    )


# ----------------------------------------------------- image and version ----
def test_one_image_everywhere_and_kustomize_rewrites_it():
    images = {c["image"] for _, c, _ in CONTAINERS}
    assert len(images) == 1, f"one image for all pods, found {images}"
    name, _, tag = images.pop().rpartition(":")
    kustomization = yaml.safe_load((CLUSTER_DIR / "kustomization.yaml").read_text())
    (entry,) = kustomization["images"]
    assert entry["name"] == name and entry.get("newTag", tag) == tag


def test_ray_version_matches_dockerfile_base():
    dockerfile = (CLUSTER_DIR / "Dockerfile").read_text()
    (version,) = re.findall(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.M)
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-gpu$", dockerfile, re.M)
    (workdir,) = re.findall(r"^WORKDIR (\S+)$", dockerfile, re.M)
    assert workdir == IMAGE_REPO_DIR
    for where, cluster in CLUSTERS:
        assert cluster["rayVersion"] == version, (
            f"{where}: rayVersion != Dockerfile RAY_VERSION {version}"
        )


def test_pipeline_embeds_exactly_the_raycluster_spec():
    embedded = find_doc("rayjob-pipeline.yaml").body["spec"]["rayClusterSpec"]
    assert embedded == find_doc("raycluster.yaml").body["spec"], "edit both copies together"


# --------------------------------------------------------- runtime envs ----
def _runtime_env_file() -> dict:
    env = yaml.safe_load((CLUSTER_DIR / "runtime_env.yaml").read_text())
    assert isinstance(env, dict)
    return env


def _check_runtime_env(where: str, env: dict):
    assert set(env) <= RUNTIME_ENV_FIELDS, (
        f"{where}: unknown fields {set(env) - RUNTIME_ENV_FIELDS}"
    )
    assert not set(env) & INSTALLERS, f"{where}: installs at run time"
    env_vars = env.get("env_vars") or {}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()), (
        f"{where}: str->str"
    )
    for offline in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        assert env_vars.get(offline) == "1", f'{where}: {offline} must be "1"'
    assert env_vars.get("TOKENIZERS_PARALLELISM") == "false"
    # A runtime env is job-wide: it would override the per-pod accelerator.
    assert "DS_ACCELERATOR" not in env_vars, f"{where}: DS_ACCELERATOR belongs to the pods"
    for pattern in ("runs/", ".venv/", ".git/"):
        assert pattern in env.get("excludes", []), f"{where}: excludes lacks {pattern}"


def test_runtime_env_file():
    env = _runtime_env_file()
    _check_runtime_env("runtime_env.yaml", env)
    assert env["working_dir"] == "."


@pytest.mark.parametrize("doc", docs_of_kind("RayJob"), ids=lambda d: d.label)
def test_rayjob_runtime_env(doc):
    env = runtime_env_of(doc)
    _check_runtime_env(doc.label, env)
    assert env["working_dir"] == IMAGE_REPO_DIR, (
        f"{doc.label}: working_dir is the repo inside the image"
    )
    assert env["env_vars"] == _runtime_env_file()["env_vars"], (
        f"{doc.label}: env_vars differ from runtime_env.yaml"
    )


ENTRYPOINTS = {
    "irgpt-pipeline": "python jobs/pipeline.py --config configs/internvl2-8b.yaml",
    "irgpt-tune": "python jobs/tune.py --config configs/internvl2-8b.yaml --space tune_spaces/default.yaml",
    # The object-storage variant: every location from the ConfigMap irgpt-storage.
    "irgpt-pipeline-s3": "python jobs/pipeline.py --config configs/internvl2-8b.yaml"
    " --set run.root=${IRGPT_RUN_ROOT:?}"
    " --set data.dir=${IRGPT_DATA_DIR:?}"
    " --set train.model=${IRGPT_MODELS:?}/InternVL2-8B"
    " --set scoring.lesson1.extractor=${IRGPT_MODELS:?}/infmae/checkpoint.pth"
    " --set scoring.lesson2.pretrained=${IRGPT_MODELS:?}/clip/ViT-B-16-openai.bin"
    " --set train.storage_path=${IRGPT_RAY_STORAGE:?}",
}


def test_rayjob_entrypoints():
    found = {d.name: d.body["spec"]["entrypoint"] for d in docs_of_kind("RayJob")}
    assert found == ENTRYPOINTS


REFERENCED = sorted(
    {a for e in ENTRYPOINTS.values() for a in shlex.split(e) if a.endswith((".py", ".yaml"))}
)


@pytest.mark.parametrize("rel", REFERENCED)
def test_entrypoint_files_exist(rel):
    assert (REPO_ROOT / rel).is_file(), (
        f"a RayJob entrypoint names {rel}, which the repository lacks"
    )


def test_training_world_reads_the_real_config(tmp_path, monkeypatch):
    import sys

    module = sys.modules[__name__]
    cfg = tmp_path / "internvl2-8b.yaml"
    monkeypatch.setattr(module, "REAL_CONFIG", cfg)
    assert training_world()[:2] == (ISSUE_WORLD_SIZE, 1)  # absent: the issue's 8 GPUs
    cfg.write_text("train: {num_workers: 4, use_gpu: true, gpus_per_worker: 2}\n")
    assert training_world()[:2] == (8, 2)
    cfg.write_text("train: {num_workers: 8, use_gpu: true}\n")
    assert training_world()[:2] == (8, 1)
    cfg.write_text("train: {use_gpu: true}\n")
    with pytest.raises(AssertionError, match="num_workers"):
        training_world()
