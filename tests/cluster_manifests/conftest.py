"""Fixtures for the cluster/ manifest tests: the KubeRay CRDs, loaded once."""

from __future__ import annotations

import pytest

from .kube_schema import CRD_FILES, load_crd


@pytest.fixture(scope="session")
def kuberay_crds() -> dict:
    """{kind: CRD}; fails (never skips) when tests/cluster_manifests/crds/ is missing."""
    try:
        return {kind: load_crd(kind) for kind in CRD_FILES}
    except FileNotFoundError as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)
