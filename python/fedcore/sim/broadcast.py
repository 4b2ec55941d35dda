"""What the server sends each selected client before it trains: its model, SCAFFOLD's control, the mask."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fedcore.compression import FLOAT32_BYTES, Vector
from fedcore.downlink import DownlinkSync
from fedcore.selection import RoundSelection
from fedcore.server import Downlink
from fedcore.sim.memory import ClientMemory
from fedcore.sim.seeds import CONTROL_DOWNLINK_SEED, DOWNLINK_SEED, derive_seed
from fedcore.strategies.base import ServerState, Strategy

if TYPE_CHECKING:
    from fedcore.partial import Mask


def send_models(
    sync: DownlinkSync | None,
    memory: ClientMemory,
    initial: Vector,
    weights: Vector,
    sel: RoundSelection,
    seed: int,
    round_num: int,
) -> tuple[dict[int, Vector], int]:
    """Each selected client's own model after this round's message, and the bytes of all messages.

    Without a downlink codec every client gets the weights raw (an empty dict: they use the broadcast).
    With one, each gets the encoded difference to what it holds; dropouts received theirs too.
    """
    if sync is None:
        return {}, FLOAT32_BYTES * int(weights.size) * int(sel.selected.size)
    models: dict[int, Vector] = {}
    total = 0
    for cid in sel.selected.tolist():
        payload, nbytes = sync.send(cid, weights, derive_seed(seed, round_num, cid, DOWNLINK_SEED))
        models[cid] = memory.receive(cid, payload, initial)
        total += nbytes
    return models, total


def send_control(
    downlink: Downlink, state: ServerState, strategy: Strategy, seed: int, round_num: int
) -> tuple[Vector | None, int]:
    """SCAFFOLD's server control as every client sees it, and its bytes per client; (None, 0) otherwise."""
    if not strategy.uses_control:
        return None, 0
    control = state.opt_state["control"].astype(np.float32)
    return downlink.send(control, derive_seed(seed, round_num, -1, CONTROL_DOWNLINK_SEED))


def mask_descriptor_bytes(mask: Mask | None) -> int:
    """A seeded mask is rebuilt from the run seed and round: nothing travels; others go as a bitmap."""
    if mask is None or mask.is_seeded:
        return 0
    return len(mask.to_bitmap())
