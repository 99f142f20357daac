"""The ``--device`` setting (``auto``, ``cpu``, ``cuda``, ``cuda:k``) as a ``torch.device``, in one place."""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_device"]


def resolve_device(device: Any = "auto") -> Any:
    """``"auto"`` → CUDA when available, else the CPU; a ``torch.device`` is returned as it is.

    Raises ValueError naming the setting for an unknown device or CUDA where none is available.
    """
    import torch  # here: the CLI and configs name devices without importing torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {device!r}: expected auto, cpu or cuda[:k] ({err})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available here (use --device cpu or auto)")
    return resolved
