"""fedcore: federated learning that sends a hundredth of the bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fedcore.layout import ParamLayout

if TYPE_CHECKING:
    from fedcore.config import FLConfig
    from fedcore.data import FederatedData
    from fedcore.sim import simulate

__all__ = ["FLConfig", "FederatedData", "ParamLayout", "simulate"]
__version__ = "0.1.0"

_LAZY = {"FLConfig": "fedcore.config", "FederatedData": "fedcore.data", "simulate": "fedcore.sim"}


def __getattr__(name: str) -> Any:
    """`fedcore.simulate`, `fedcore.FLConfig`, `fedcore.FederatedData` without importing them up front."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fedcore' has no attribute {name!r}")
