"""Training backends behind one protocol; torch, mlx and sklearn load only when asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fedcore.backends.base import EvalResult, FitResult, ModelAdapter, TrainConfig
from fedcore.backends.models import BACKENDS, MODELS, make_adapter

if TYPE_CHECKING:
    from fedcore.backends.mlx_backend import MLXAdapter
    from fedcore.backends.sklearn_backend import SklearnAdapter
    from fedcore.backends.torch_backend import TorchAdapter

_LAZY = {
    "TorchAdapter": "fedcore.backends.torch_backend",
    "MLXAdapter": "fedcore.backends.mlx_backend",
    "SklearnAdapter": "fedcore.backends.sklearn_backend",
}

__all__ = [
    "BACKENDS",
    "MODELS",
    "EvalResult",
    "FitResult",
    "MLXAdapter",
    "ModelAdapter",
    "SklearnAdapter",
    "TorchAdapter",
    "TrainConfig",
    "make_adapter",
]


def __getattr__(name: str) -> Any:
    """Import an adapter's framework only when that adapter is first used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fedcore.backends' has no attribute {name!r}")
