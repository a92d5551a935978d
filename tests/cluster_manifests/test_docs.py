"""docs/kuberay.md names the objects and files that cluster/ really has."""

from __future__ import annotations

import re

from .kube_schema import REPO_ROOT
from .manifests import CLUSTER_DIR, docs_of_kind

DOC = REPO_ROOT / "docs" / "kuberay.md"


def _text() -> str:
    assert DOC.is_file(), "docs/kuberay.md is missing"
    return DOC.read_text()


def test_port_forward_targets_the_head_service():
    (cluster,) = docs_of_kind("RayCluster")
    # KubeRay names the head service <RayCluster name>-head-svc.
    assert f"kubectl port-forward svc/{cluster.name}-head-svc 8265:8265" in _text()


def test_submit_command_matches_runtime_env_header():
    first = (CLUSTER_DIR / "runtime_env.yaml").read_text().splitlines()[0]
    command = first.removeprefix("# ")
    flat = re.sub(r"\s*\\\n\s*", " ", _text())  # join shell continuation lines
    assert command in flat, f"docs/kuberay.md should show: {command}"


def test_referenced_cluster_files_exist():
    named = set(re.findall(r"cluster/([\w.-]+\.(?:yaml|md)|Dockerfile)", _text()))
    assert named, "docs/kuberay.md names no cluster/ file"
    missing = sorted(n for n in named if not (CLUSTER_DIR / n).is_file())
    assert not missing, missing


def test_operator_install_and_every_rayjob_are_documented():
    text = _text()
    assert "helm repo add kuberay https://ray-project.github.io/kuberay-helm/" in text
    assert "helm install kuberay-operator kuberay/kuberay-operator" in text
    for job in docs_of_kind("RayJob"):
        assert f"kubectl get rayjob {job.name}" in text, job.name
