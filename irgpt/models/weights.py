"""`weights_hash`: one fingerprint of a model's weights, for provenance and resume checks."""

from __future__ import annotations

import hashlib

import torch


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 over (name, dtype, shape, bytes) of every state-dict tensor in name order; 16 hex.

    A DDP / `prepare_model` wrapper is looked through, so a wrapped and a bare
    model hash alike.
    """
    h = hashlib.sha256()
    state = getattr(model, "module", model).state_dict()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
