"""IRGPT-Ray: the IRGPT bi-cross-modal curriculum (ICCV 2025) on Ray."""

__version__ = "0.1.0"
