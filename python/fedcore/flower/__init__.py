"""fedcodec inside a Flower app: a client mod that sends frames and a strategy wrapper that decodes them.

    strategy = CompressedStrategy(FedAvg(...), codec="topk:0.02+quant:4")        # ServerApp
    app = ClientApp(mods=[fedcodec_mod(error_feedback=True)])                     # ClientApp

`fedcore.flower.frames` (layouts, encode/decode) needs no flwr; the mod and the strategies import flwr
when first used (`pip install "fedcore[flower]"`). Walk-through: examples/flower/README.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fedcore.flower.frames import ArraysLayout, decode_update, encode_update

if TYPE_CHECKING:
    from fedcore.flower.mod import FedcodecMod, fedcodec_mod
    from fedcore.flower.strategy import UPLINK_BYTES, UPLINK_WIRE_BYTES, CompressedStrategy, UplinkMeter

_LAZY = {
    "FedcodecMod": "fedcore.flower.mod",
    "fedcodec_mod": "fedcore.flower.mod",
    "CompressedStrategy": "fedcore.flower.strategy",
    "UplinkMeter": "fedcore.flower.strategy",
    "UPLINK_BYTES": "fedcore.flower.strategy",
    "UPLINK_WIRE_BYTES": "fedcore.flower.strategy",
}

__all__ = [
    "UPLINK_BYTES",
    "UPLINK_WIRE_BYTES",
    "ArraysLayout",
    "CompressedStrategy",
    "FedcodecMod",
    "UplinkMeter",
    "decode_update",
    "encode_update",
    "fedcodec_mod",
]


def __getattr__(name: str) -> Any:
    """The flwr-backed names, imported on first use so the pure parts work without flwr."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fedcore.flower' has no attribute {name!r}")
