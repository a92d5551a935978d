"""Offline checks of the KubeRay manifests under cluster/ (issue 8)."""
