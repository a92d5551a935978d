"""Safe defaults in every pod of cluster/: non-root, no escalation, nothing
exposed beyond the cluster, no credentials in the manifests."""

from __future__ import annotations

import re

import pytest
import yaml

from .manifests import (
    CLUSTER_DIR,
    all_containers,
    all_documents,
    cluster_specs,
    container_lists_anywhere,
    containers,
    docs_of_kind,
    k8s_documents,
    manifest_files,
    pod_templates,
    runtime_env_of,
)

RUN_AS_USER = 1000  # the `ray` user of the rayproject/ray images
CONTAINERS = list(all_containers())
UNEXPOSED_SERVICE_TYPES = {None, "ClusterIP"}
# Pod Security "restricted": volume types a pod may use.
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
    "name",
}


def _ids(items):
    return [where for where, *_ in items]


def test_every_container_is_found():
    """The pod-template walker misses no container list, however nested."""
    anywhere = walked = 0
    for doc in k8s_documents():
        anywhere += sum(1 for _ in container_lists_anywhere(doc.body))
        for _, template in pod_templates(doc):
            pod = template.get("spec", {})
            walked += sum(
                1 for f in ("initContainers", "containers", "ephemeralContainers") if f in pod
            )
    assert walked == anywhere, (
        f"{anywhere - walked} container list(s) outside the walked pod templates"
    )
    assert len(CONTAINERS) >= len(_templates())


def _check_security_context(where: str, sc: dict, pod_sc: dict):
    assert sc, f"{where}: no securityContext"
    assert sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot must be true"
    assert sc.get("runAsUser", pod_sc.get("runAsUser")) == RUN_AS_USER, (
        f"{where}: runAsUser != 1000"
    )
    assert sc.get("allowPrivilegeEscalation") is False, (
        f"{where}: allowPrivilegeEscalation must be false"
    )
    assert not sc.get("privileged"), f"{where}: privileged"
    caps = sc.get("capabilities") or {}
    assert "ALL" in (caps.get("drop") or []), f"{where}: capabilities.drop must hold ALL"
    assert not caps.get("add"), f"{where}: adds capabilities {caps.get('add')}"
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    assert seccomp in ("RuntimeDefault", "Localhost"), f"{where}: no seccompProfile"


@pytest.mark.parametrize("where,container,template", CONTAINERS, ids=_ids(CONTAINERS))
def test_container_runs_unprivileged(where, container, template):
    pod_sc = template.get("spec", {}).get("securityContext") or {}
    _check_security_context(where, container.get("securityContext") or {}, pod_sc)


def _cluster_specs():
    return [(f"{d.label} {w}", s) for d in k8s_documents() for w, s in cluster_specs(d)]


@pytest.mark.parametrize("where,cluster", _cluster_specs(), ids=_ids(_cluster_specs()))
def test_autoscaler_sidecar_runs_unprivileged(where, cluster):
    """KubeRay injects the autoscaler container from autoscalerOptions."""
    if cluster.get("enableInTreeAutoscaling"):
        sc = (cluster.get("autoscalerOptions") or {}).get("securityContext") or {}
        _check_security_context(f"{where} autoscaler", sc, {})


def _templates():
    return [(f"{d.label} {w}", t) for d in k8s_documents() for w, t in pod_templates(d)]


@pytest.mark.parametrize("where,template", _templates(), ids=_ids(_templates()))
def test_pod_has_no_host_access(where, template):
    pod = template.get("spec", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(flag), f"{where}: {flag}"
    pod_sc = pod.get("securityContext") or {}
    assert pod_sc.get("runAsNonRoot") in (None, True), f"{where}: pod runAsNonRoot false"
    assert pod_sc.get("runAsUser") != 0, f"{where}: pod runs as root"
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        assert kinds <= ALLOWED_VOLUMES, f"{where}: volume {volume['name']} uses {kinds}"
    for _, c in containers(template):
        for port in c.get("ports") or []:
            assert "hostPort" not in port, f"{where}: hostPort {port}"


@pytest.mark.parametrize("where,template", _templates(), ids=_ids(_templates()))
def test_only_the_head_mounts_a_service_account_token(where, template):
    """Workers and the submitter never call the Kubernetes API; the head's
    autoscaler sidecar does (KubeRay gives it a Role)."""
    if ".headGroupSpec." not in where:
        assert template["spec"].get("automountServiceAccountToken") is False, where


# -------------------------------------------------------------- exposure ----
@pytest.mark.parametrize("where,cluster", _cluster_specs(), ids=_ids(_cluster_specs()))
def test_head_service_stays_inside_the_cluster(where, cluster):
    head = cluster["headGroupSpec"]
    assert head.get("serviceType") in UNEXPOSED_SERVICE_TYPES, (
        f"{where}: serviceType {head.get('serviceType')}"
    )
    svc_type = ((head.get("headService") or {}).get("spec") or {}).get("type")
    assert svc_type in UNEXPOSED_SERVICE_TYPES, f"{where}: headService type {svc_type}"
    assert not head.get("enableIngress"), f"{where}: enableIngress"
    assert not cluster.get("headServiceAnnotations"), f"{where}: headServiceAnnotations"
    assert (cluster.get("authOptions") or {}).get("mode") == "token", (
        f"{where}: dashboard without token auth"
    )


def test_no_ingress_or_external_service():
    for doc in k8s_documents():
        assert doc.kind not in ("Ingress", "Route", "Gateway", "HTTPRoute"), doc.label
        if doc.kind == "Service":
            assert doc.body.get("spec", {}).get("type") in UNEXPOSED_SERVICE_TYPES, doc.label


# ----------------------------------------------------------- credentials ----
SECRET_WORDS = {"PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "CREDENTIALS", "APIKEY"}
SECRET_PHRASES = ("ACCESS_KEY", "API_KEY", "PRIVATE_KEY", "SESSION_TOKEN", "SECRET_KEY")
LEAK_PATTERNS = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),  # GitHub token
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face token
]


def looks_secret(name: str) -> bool:
    """AWS_SECRET_ACCESS_KEY, password, apiToken: yes; TOKENIZERS_PARALLELISM, secretName: no."""
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper().replace("-", "_")
    words = set(snake.split("_"))
    if words & {"NAME", "REF"} or snake.endswith("_NAME"):
        return False  # refers to a Secret by name
    return bool(words & SECRET_WORDS) or any(p in snake for p in SECRET_PHRASES)


def test_looks_secret():
    assert looks_secret("AWS_SECRET_ACCESS_KEY") and looks_secret("AWS_ACCESS_KEY_ID")
    assert looks_secret("password") and looks_secret("apiToken") and looks_secret("HF_TOKEN")
    assert not looks_secret("TOKENIZERS_PARALLELISM") and not looks_secret("secretName")
    assert not looks_secret("HF_HUB_OFFLINE")


def _literal_secrets(node, path=""):
    if isinstance(node, dict):
        if isinstance(node.get("name"), str) and "value" in node and looks_secret(node["name"]):
            yield f"{path}: env {node['name']} has a literal value"
        for key, value in node.items():
            sub = f"{path}.{key}"
            if (
                isinstance(value, (str, int, float))
                and not isinstance(value, bool)
                and looks_secret(str(key))
            ):
                if str(value).strip():
                    yield f"{sub}: literal value for a secret-like key"
            yield from _literal_secrets(value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _literal_secrets(value, f"{path}[{i}]")


def test_no_literal_secret_values():
    found = [f"{d.label}{hit}" for d in all_documents() for hit in _literal_secrets(d.body)]
    for doc in docs_of_kind("RayJob"):
        env_vars = runtime_env_of(doc).get("env_vars") or {}
        found += [f"{doc.label} runtimeEnvYAML env_vars.{k}" for k in env_vars if looks_secret(k)]
    assert not found, found


@pytest.mark.parametrize(
    "path", manifest_files() + [CLUSTER_DIR / "Dockerfile"], ids=lambda p: p.name
)
def test_no_credential_patterns_in_text(path):
    text = path.read_text()
    hits = [m.group(0)[:12] + "..." for rx in LEAK_PATTERNS for m in rx.finditer(text)]
    assert not hits, f"{path.name}: {hits}"


def test_no_secret_objects_in_manifests():
    assert not [d.label for d in k8s_documents() if d.kind == "Secret"]


def _secret_refs(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("secretRef", "secretKeyRef") and isinstance(value, dict):
                yield f"{path}.{key}", value
            yield from _secret_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _secret_refs(value, f"{path}[{i}]")


def test_secrets_are_optional_references_by_name():
    refs = [(f"{d.label}{p}", r) for d in k8s_documents() for p, r in _secret_refs(d.body)]
    assert refs, "expected the S3 credentials as a secretRef"
    for where, ref in refs:
        assert ref.get("name") and ref.get("optional") is True, f"{where}: {ref}"


def test_runtime_env_file_has_no_secrets():
    env = yaml.safe_load((CLUSTER_DIR / "runtime_env.yaml").read_text())
    assert not [k for k in env.get("env_vars") or {} if looks_secret(k)]
