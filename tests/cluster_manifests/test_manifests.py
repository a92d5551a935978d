"""cluster/*.yaml parse, say how to use them, and validate against the KubeRay CRDs.

The CRDs are the copy in tests/cluster_manifests/crds/ (KubeRay, Apache-2.0; or $IRGPT_KUBERAY_CRDS); see
kube_schema.py for the API-server behaviours added to plain Draft 7.
"""

from __future__ import annotations

import copy
import re

import pytest

from .kube_schema import REPO_ROOT, cel_guarded_paths, schema_errors, version_schema
from .manifests import (
    CLUSTER_DIR,
    all_documents,
    cluster_rel,
    cluster_specs,
    docs_of_kind,
    documents,
    find_doc,
    k8s_documents,
    manifest_files,
    worker_group,
)

RAY_KINDS = ("RayCluster", "RayJob")
EXPECTED_FILES = {  # relative to cluster/
    "kustomization.yaml",
    "pvc.yaml",
    "raycluster.yaml",
    "rayjob-pipeline.yaml",
    "rayjob-tune.yaml",
    "runtime_env.yaml",
    # the object-storage variant (no shared volume)
    "object-storage/storage-config.yaml",
    "object-storage/rayjob-pipeline-s3.yaml",
}
USAGE_LINE = re.compile(r"^# (kubectl apply|ray job submit) ")


def _rel(path) -> str:
    return str(path.relative_to(REPO_ROOT))


def test_expected_manifests_exist():
    names = {cluster_rel(p) for p in manifest_files()}
    assert EXPECTED_FILES <= names, f"missing: {sorted(EXPECTED_FILES - names)}"


@pytest.mark.parametrize("path", manifest_files(), ids=_rel)
def test_yaml_parses_and_first_line_says_how_to_use_it(path):
    docs = documents(path)  # multi-document aware (yaml.load_all)
    assert docs, f"{_rel(path)} holds no YAML document"
    first = path.read_text().splitlines()[0]
    assert USAGE_LINE.match(first), f"{_rel(path)}: first line must be the command, got {first!r}"
    target = "-k cluster/" if path.name == "kustomization.yaml" else _rel(path)
    assert target in first, f"{_rel(path)}: the command on line 1 should name {target!r}"


def test_dockerfile_first_line_is_its_build_command():
    first = (CLUSTER_DIR / "Dockerfile").read_text().splitlines()[0]
    assert first.startswith("# docker build -f cluster/Dockerfile ")


def test_crds_are_found_and_serve_v1(kuberay_crds):
    for kind, crd in kuberay_crds.items():
        served = {v["name"] for v in crd["spec"]["versions"] if v.get("served")}
        assert "v1" in served, f"{kind} CRD does not serve v1"


def test_every_ray_object_is_ray_io_v1():
    ray_docs = [d for d in k8s_documents() if d.kind in RAY_KINDS]
    assert {d.kind for d in ray_docs} == set(RAY_KINDS)
    for doc in ray_docs:
        assert doc.body["apiVersion"] == "ray.io/v1", doc.label


@pytest.mark.parametrize(
    "doc", [d for d in k8s_documents() if d.kind in RAY_KINDS], ids=lambda d: d.label
)
def test_ray_objects_validate_against_crd(doc, kuberay_crds):
    assert schema_errors(doc.body) == []


# ------------------------------------------------ broken copies must fail ----
def _gpu(cluster):
    return worker_group(cluster, "gpu-workers")


def _head(cluster):
    return cluster["headGroupSpec"]["template"]["spec"]["containers"][0]


def _set(path_fn, key, value):
    def mutate(body):
        path_fn(body)[key] = value

    return mutate


def _delete(path_fn, key):
    def mutate(body):
        del path_fn(body)[key]

    return mutate


def _cluster(body):
    return body["spec"] if body["kind"] == "RayCluster" else body["spec"]["rayClusterSpec"]


BROKEN = [
    # (file, mutation, text expected in some error)
    (
        "raycluster.yaml",
        _set(lambda b: _gpu(_cluster(b)), "replicas", "eight"),
        "'eight' is not of type 'integer'",
    ),
    (
        "raycluster.yaml",
        _set(lambda b: _gpu(_cluster(b)), "replicas", 8.0),
        "8.0 is not of type 'integer'",
    ),
    (
        "raycluster.yaml",
        _set(lambda b: _gpu(_cluster(b)), "maxReplicas", 2**31),
        "is not a 'int32'",
    ),
    (
        "raycluster.yaml",
        _delete(lambda b: b["spec"], "headGroupSpec"),
        "'headGroupSpec' is a required property",
    ),
    (
        "raycluster.yaml",
        _delete(lambda b: _gpu(_cluster(b)), "groupName"),
        "'groupName' is a required property",
    ),
    (
        "raycluster.yaml",
        _set(lambda b: _gpu(_cluster(b)), "minReplica", 0),
        "'minReplica' was unexpected",
    ),
    ("raycluster.yaml", _set(lambda b: b, "specs", {}), "'specs' was unexpected"),
    (
        "raycluster.yaml",
        _set(lambda b: _cluster(b)["headGroupSpec"]["rayStartParams"], "num-gpus", 0),
        "0 is not of type 'string'",
    ),
    (
        "raycluster.yaml",
        _set(lambda b: _head(_cluster(b))["resources"]["limits"], "memory", "lots"),
        "does not match",
    ),
    (
        "raycluster.yaml",
        lambda b: _head(_cluster(b))["env"].append({"name": "HF_HUB_OFFLINE", "value": "0"}),
        "share the map key (name='HF_HUB_OFFLINE')",
    ),
    (
        "rayjob-pipeline.yaml",
        _set(lambda b: _gpu(_cluster(b)), "replicas", "eight"),
        "'eight' is not of type 'integer'",
    ),
    (
        "rayjob-pipeline.yaml",
        _delete(lambda b: b["spec"]["submitterPodTemplate"]["spec"], "containers"),
        "'containers' is a required property",
    ),
    (
        "object-storage/rayjob-pipeline-s3.yaml",
        _set(
            lambda b: _gpu(_cluster(b))["template"]["spec"]["volumes"][0]["emptyDir"],
            "sizeLimit",
            "lots",
        ),
        "does not match",
    ),
    (
        "object-storage/rayjob-pipeline-s3.yaml",
        lambda b: _head(_cluster(b))["envFrom"].append({"configMapRef": {"name": "x", "key": "y"}}),
        "'key' was unexpected",
    ),
    (
        "rayjob-tune.yaml",
        _set(lambda b: b["spec"], "activeDeadlineSeconds", "3 days"),
        "is not of type 'integer'",
    ),
    (
        "rayjob-tune.yaml",
        _set(lambda b: b["spec"], "shutdownAfterJobsFinish", True),
        "was unexpected",
    ),
]


@pytest.mark.parametrize(
    "filename,mutate,expected", BROKEN, ids=lambda v: v if isinstance(v, str) else ""
)
def test_broken_copy_fails_validation(filename, mutate, expected, kuberay_crds):
    body = copy.deepcopy(find_doc(filename).body)
    assert schema_errors(body) == [], "the unbroken manifest must be valid first"
    mutate(body)
    errors = schema_errors(body)
    assert errors, f"{filename}: the broken copy validated"
    assert any(expected in e for e in errors), f"expected {expected!r} among {errors}"


# ------------------------------------- KubeRay's own checks (validation.go) ----
# The operator refuses objects the CRD schema lets through; these mirror
# ray-operator/controllers/ray/utils/validation.go for the fields used here.
DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
MAX_NAME = {"RayCluster": 53, "RayJob": 47}  # 63 - "-serve-svc"; minus the 6-char cluster suffix


@pytest.mark.parametrize(
    "doc", [d for d in k8s_documents() if d.kind in RAY_KINDS], ids=lambda d: d.label
)
def test_names_pass_kuberay_validation(doc):
    assert DNS1035.fullmatch(doc.name), f"{doc.label}: name must be a DNS-1035 label"
    assert len(doc.name) <= MAX_NAME[doc.kind], (
        f"{doc.label}: name longer than {MAX_NAME[doc.kind]}"
    )


def _cluster_specs():
    return [(f"{d.label} {w}", s) for d in k8s_documents() for w, s in cluster_specs(d)]


@pytest.mark.parametrize(
    "where,cluster", _cluster_specs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_cluster_specs_pass_kuberay_validation(where, cluster):
    groups = [("head", cluster["headGroupSpec"])] + [
        (g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])
    ]
    for name, group in groups:
        assert group["template"]["spec"].get("containers"), f"{where} {name}: no container"
        params = group.get("rayStartParams") or {}
        resource_params = {"num-cpus", "num-gpus", "memory", "resources"} & set(params)
        assert not (resource_params and group.get("resources")), (
            f"{where} {name}: resources set twice"
        )
        assert "labels" not in params, f"{where} {name}: use the group's labels field"
        if cluster.get("enableInTreeAutoscaling"):
            assert not group.get("suspend"), f"{where} {name}: suspended with the autoscaler on"
    if (cluster.get("authOptions") or {}).get("mode") == "token":
        version = tuple(int(x) for x in cluster["rayVersion"].split(".")[:3])
        assert version >= (2, 52, 0), f"{where}: token auth needs Ray >= 2.52.0"


@pytest.mark.parametrize("doc", docs_of_kind("RayJob"), ids=lambda d: d.label)
def test_rayjobs_pass_kuberay_validation(doc):
    spec = doc.body["spec"]
    selector = spec.get("clusterSelector") or {}
    assert ("rayClusterSpec" in spec) != bool(selector), (
        f"{doc.label}: exactly one of rayClusterSpec / clusterSelector"
    )
    if selector:
        assert selector.get("ray.io/cluster"), f"{doc.label}: clusterSelector needs ray.io/cluster"
        clusters = {d.name for d in docs_of_kind("RayCluster")}
        assert selector["ray.io/cluster"] in clusters, (
            f"{doc.label}: selects no RayCluster of cluster/"
        )
    if spec.get("ttlSecondsAfterFinished", 0) > 0:
        assert spec.get("shutdownAfterJobFinishes"), (
            f"{doc.label}: TTL without shutdownAfterJobFinishes"
        )
    assert spec.get("activeDeadlineSeconds", 1) > 0
    assert spec.get("backoffLimit", 0) >= 0
    mode = spec.get("submissionMode", "K8sJobMode")
    assert mode in {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
    if mode == "SidecarMode":
        assert "submitterPodTemplate" not in spec and "submitterConfig" not in spec
    if "submitterPodTemplate" in spec:
        # The submitter is a Kubernetes Job: its pods may not restart Always.
        assert spec["submitterPodTemplate"]["spec"].get("restartPolicy") in ("Never", "OnFailure")


def _set_paths(node, path=()):
    """Every path (lists/maps as '*') that a document sets."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _set_paths(value, path + (key,))
    elif isinstance(node, list):
        for value in node:
            yield from _set_paths(value, path + ("*",))


@pytest.mark.parametrize(
    "doc", [d for d in k8s_documents() if d.kind in RAY_KINDS], ids=lambda d: d.label
)
def test_no_field_guarded_by_cel_rules(doc, kuberay_crds):
    """CEL rules (x-kubernetes-validations) do not run offline: stay clear of them."""
    guarded = cel_guarded_paths(version_schema(doc.kind, doc.body["apiVersion"]))
    used = set(_set_paths(doc.body))
    hits = {".".join(p): rules for p, rules in guarded.items() if p in used}
    assert not hits, f"{doc.label} sets CEL-validated fields; check them by hand: {hits}"


def test_all_documents_are_mappings():
    for doc in all_documents():
        assert isinstance(doc.body, dict), doc.label
