"""Loading cluster/*.yaml and walking the pod templates inside Ray objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from .kube_schema import LOADER, REPO_ROOT

CLUSTER_DIR = REPO_ROOT / "cluster"
# The object-storage variant (no shared volume): its manifests live here.
OBJECT_STORAGE_DIR = CLUSTER_DIR / "object-storage"
REAL_CONFIG = REPO_ROOT / "configs" / "internvl2-8b.yaml"
SHARED_MOUNT = "/mnt/irgpt"
IMAGE_REPO_DIR = "/home/ray/irgpt"  # cluster/Dockerfile WORKDIR = the RayJobs' working_dir
# Issue 8 trains InternVL2-8B on 8 GPUs; used while configs/internvl2-8b.yaml
# (which carries the world size as train.num_workers x train.gpus_per_worker)
# is not in the tree.
ISSUE_WORLD_SIZE = 8
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


@dataclass(frozen=True)
class Doc:
    path: Path
    index: int
    body: dict

    @property
    def kind(self) -> str:
        return self.body.get("kind", "")

    @property
    def name(self) -> str:
        return self.body.get("metadata", {}).get("name", "")

    @property
    def label(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}#{self.index}:{self.kind}/{self.name}"


def manifest_files() -> list[Path]:
    return sorted(p for p in CLUSTER_DIR.rglob("*") if p.suffix in (".yaml", ".yml"))


@cache
def _load(path: Path) -> tuple:
    with path.open() as f:
        return tuple(d for d in yaml.load_all(f, Loader=LOADER) if d is not None)


def documents(path: Path) -> list[Doc]:
    return [Doc(path, i, body) for i, body in enumerate(_load(path))]


def all_documents() -> list[Doc]:
    return [doc for path in manifest_files() for doc in documents(path)]


def k8s_documents() -> list[Doc]:
    """Documents that are Kubernetes objects (not the runtime env or kustomization)."""
    return [d for d in all_documents() if "apiVersion" in d.body and d.kind != "Kustomization"]


def docs_of_kind(kind: str) -> list[Doc]:
    return [d for d in k8s_documents() if d.kind == kind]


def find_doc(filename: str) -> Doc:
    """The one document of cluster/`filename` (a path relative to cluster/)."""
    (doc,) = documents(CLUSTER_DIR / filename)
    return doc


def cluster_rel(path: Path) -> str:
    """`path` relative to cluster/, e.g. "object-storage/storage-config.yaml"."""
    return path.relative_to(CLUSTER_DIR).as_posix()


def uses_shared_volume(doc: Doc) -> bool:
    """True for the shared-volume (PVC) setup; False for the object-storage variant."""
    return not doc.path.is_relative_to(OBJECT_STORAGE_DIR)


# ------------------------------------------------------- pod templates ----
def cluster_specs(doc: Doc) -> Iterator[tuple[str, dict]]:
    """(location, RayClusterSpec) of a RayCluster or a RayJob's embedded cluster."""
    spec = doc.body.get("spec", {})
    if doc.kind == "RayCluster":
        yield "spec", spec
    elif doc.kind == "RayJob" and "rayClusterSpec" in spec:
        yield "spec.rayClusterSpec", spec["rayClusterSpec"]


def pod_templates(doc: Doc) -> Iterator[tuple[str, dict]]:
    """(location, PodTemplateSpec) of every pod the object makes."""
    spec = doc.body.get("spec", {})
    for where, cluster in cluster_specs(doc):
        yield f"{where}.headGroupSpec.template", cluster["headGroupSpec"]["template"]
        for group in cluster.get("workerGroupSpecs", []):
            yield f"{where}.workerGroupSpecs[{group.get('groupName')}].template", group["template"]
    if doc.kind == "RayJob" and "submitterPodTemplate" in spec:
        yield "spec.submitterPodTemplate", spec["submitterPodTemplate"]
    if doc.kind == "Pod":
        yield "", {"metadata": doc.body.get("metadata", {}), "spec": spec}
    if doc.kind in POD_KINDS:
        yield "spec.template", spec.get("template", {})


def containers(template: dict) -> Iterator[tuple[str, dict]]:
    pod = template.get("spec", {})
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in pod.get(field) or []:
            yield f"{field}[{c.get('name')}]", c


def all_containers() -> Iterator[tuple[str, dict, dict]]:
    """(where, container, pod template) over every manifest."""
    for doc in k8s_documents():
        for where, template in pod_templates(doc):
            for cwhere, container in containers(template):
                yield f"{doc.label} {where}.{cwhere}", container, template


def container_lists_anywhere(node, path: str = "") -> Iterator[str]:
    """Paths of every `containers` / `initContainers` list, however deep."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else key
            if key in ("containers", "initContainers", "ephemeralContainers") and isinstance(
                value, list
            ):
                yield sub
            yield from container_lists_anywhere(value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from container_lists_anywhere(value, f"{path}[{i}]")


def env_map(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or []}


def worker_group(cluster: dict, name: str) -> dict:
    groups = {g["groupName"]: g for g in cluster.get("workerGroupSpecs", [])}
    assert name in groups, f"worker group {name!r} missing (have {sorted(groups)})"
    return groups[name]


def runtime_env_of(doc: Doc) -> dict:
    env = yaml.safe_load(doc.body["spec"].get("runtimeEnvYAML") or "") or {}
    assert isinstance(env, dict), f"{doc.label}: runtimeEnvYAML is not a mapping"
    return env


# ----------------------------------------------------------- quantities ----
_SUFFIX = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def quantity(value) -> float:
    """A Kubernetes resource quantity ("500m", "16Gi", 8) as a number."""
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", str(value))
    assert m and m.group(2) in _SUFFIX, f"not a quantity: {value!r}"
    return float(m.group(1)) * _SUFFIX[m.group(2)]
