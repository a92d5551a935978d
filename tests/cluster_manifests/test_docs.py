"""docs/kuberay.md names the objects and files that cluster/ really has."""

from __future__ import annotations

import re

from .kube_schema import REPO_ROOT
from .manifests import CLUSTER_DIR, OBJECT_STORAGE_DIR, cluster_rel, docs_of_kind, manifest_files

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
    named = set(re.findall(r"cluster/((?:[\w.-]+/)*[\w.-]+\.(?:yaml|md)|Dockerfile)", _text()))
    assert named, "docs/kuberay.md names no cluster/ file"
    missing = sorted(n for n in named if not (CLUSTER_DIR / n).is_file())
    assert not missing, missing


def test_operator_install_and_every_rayjob_are_documented():
    text = _text()
    assert "helm repo add kuberay https://ray-project.github.io/kuberay-helm/" in text
    assert "helm install kuberay-operator kuberay/kuberay-operator" in text
    for job in docs_of_kind("RayJob"):
        assert f"kubectl get rayjob {job.name}" in text, job.name


def test_every_manifest_file_is_named_with_its_path():
    text = _text()
    missing = [
        f"cluster/{cluster_rel(p)}"
        for p in manifest_files()
        if f"cluster/{cluster_rel(p)}" not in text
    ]
    assert not missing, f"docs/kuberay.md does not name {missing}"


def _section(title: str) -> str:
    """The section headed `title`, up to the next heading of its level or above
    (a `# comment` inside a fenced code block is no heading)."""
    lines = _text().splitlines()
    fenced, start, level = False, None, 0
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
            continue
        heading = None if fenced else re.match(r"(#+) (.*)", line)
        if heading and start is None and title in heading.group(2):
            start, level = i, len(heading.group(1))
        elif heading and start is not None and len(heading.group(1)) <= level:
            return "\n".join(lines[start:i])
    assert start is not None, f"docs/kuberay.md has no section {title!r}"
    return "\n".join(lines[start:])


def test_object_storage_section_follows_the_shared_volume_setup():
    text = _text()
    section = _section("Object storage (no shared volume)")
    assert text.index(section) > text.index("### More than one node"), (
        "after the shared-volume setup"
    )
    flat = re.sub(r"\s*\\\n\s*", " ", section)
    # How to use each file: the command on its first line (without the trailing note).
    for path in sorted(OBJECT_STORAGE_DIR.glob("*.yaml")):
        command = path.read_text().splitlines()[0].removeprefix("# ").split("  ")[0].strip()
        assert command in flat, f"the section should show: {command}"
    for needle in (
        "kubectl create secret generic irgpt-s3",
        "--from-literal=AWS_ACCESS_KEY_ID=",
        "--from-literal=AWS_SECRET_ACCESS_KEY=",
        "AWS_ENDPOINT_URL",
        "IRGPT_CACHE_DIR",
        "kubectl delete rayjob irgpt-pipeline-s3",
        "run.json",
    ):
        assert needle in flat, f"the object-storage section should mention {needle!r}"


def test_object_storage_section_lists_where_the_outputs_land():
    from irgpt.pipeline import RUN_FILE, STAGES

    section = _section("Object storage (no shared volume)")
    top = {o.split("/")[0] for s in STAGES for o in s.outputs + s.records} | {RUN_FILE}
    missing = sorted(name for name in top if not re.search(rf"\b{re.escape(name)}\b", section))
    assert not missing, f"outputs in the bucket not documented: {missing}"
