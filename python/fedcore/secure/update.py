"""A client's model update into the ring and the round's sum back out: FedAvg weighting and random-k.

Client i scales its update by w_i = min(n_i, cap) / cap (cap: the largest client, public) and appends
w_i as one more coordinate, so the secure sum yields both sum w_i x_i and sum w_i. With `--codec
randk:F` every client keeps the same seeded F of its coordinates (the seed is public) and the
server scales the kept sum by 1/F, as the random-k codec does; the weight coordinate always travels.
`ring_input` (client) and `ring_sum` (server) are the two ends; the simulation and the gRPC client
call the same `ring_input`. Under distributed DP (`SecureSetup.dp`) every client weighs 1 (the
sensitivity is per client), no weight coordinate travels, and each client clips, rounds and adds its
Skellam share itself (`DistributedDP.ring_input`), so only the noised sum ever leaves a client's hands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fedcodec import kernels, secagg
from fedcore.secure.encoding import RingConfig, RingElements, decode_sum, unrounded_update
from fedcore.secure.messages import RoundSetup

if TYPE_CHECKING:
    from fedcore.privacy.distributed import DistributedDP

__all__ = ["SecureSetup", "kept_length", "ring_input", "ring_sum", "rounding_seed"]


@dataclass(frozen=True)
class SecureSetup:
    """What the server announces to each client before stage 1: the protocol's setup and the encoding.

    `ring.fraction` is 1 (random-k with `fraction` happens before the ring, so the weight coordinate
    stays); `ring.seed` is the round's public seed for random-k and the rounding streams.
    """

    setup: RoundSetup
    ring: RingConfig
    weight_cap: int
    fraction: float = 1.0
    dp: DistributedDP | None = None  # distributed DP: each client adds its noise share before masking

    def __post_init__(self) -> None:
        if self.weight_cap < 1:
            raise ValueError(f"weight_cap must be at least 1, got {self.weight_cap}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.ring.fraction != 1.0 or self.ring.rotate:
            raise ValueError("the announced ring adds no random-k or rotation of its own")
        if self.ring.ring_bits != self.setup.ring_bits:
            raise ValueError(f"ring of {self.ring.ring_bits} bits, setup says {self.setup.ring_bits}")


def kept_length(size: int, fraction: float, seed: int, weighted: bool = True) -> int:
    """Ring elements for a model of `size` parameters: the kept coordinates and (weighted) the weight."""
    kept = size if fraction >= 1.0 else kernels.mask_count(size, fraction, seed)
    return kept + 1 if weighted else kept


def rounding_seed(client_id: int, ring_seed: int) -> bytes:
    """The client's stochastic-rounding stream key for the round (public: it hides nothing)."""
    return secagg.derive_scalar(client_id.to_bytes(8, "little"), b"rounding %d" % ring_seed)


def ring_input(
    update: NDArray[np.float32],
    num_examples: int,
    announced: SecureSetup,
    client_id: int,
    secret: bytes | None = None,
) -> RingElements:
    """The ring elements client `client_id` masks: its weighted, random-k'd update, then its weight.

    Without distributed DP they come unrounded (`ClientMask.mask` rounds them as it masks); under it, as
    the noised codes.

    Under distributed DP, `secret` (a deployed client's own random bytes) keys the rounding and the noise
    share; without it they derive from public values, which only a simulation may do (a server that knows
    a client's noise could subtract it). Without DP the rounding seed is public: it hides nothing.
    """
    cap = announced.weight_cap
    weight = 1.0 if announced.dp is not None else min(num_examples, cap) / cap
    ring_seed = announced.ring.seed
    kept, scale = np.ravel(update), weight
    if announced.fraction < 1.0:
        scaled = np.ascontiguousarray(weight * kept, dtype=np.float32)
        kept, scale = kernels.mask_extract(scaled, announced.fraction, ring_seed), 1.0
    # one array for the (weighted) values and the weight coordinate: no copy of a 4 MB update to append it
    x = np.empty(kept.size + (announced.dp is None), dtype=np.float32)
    np.multiply(kept, scale, out=x[: kept.size])
    if announced.dp is None:
        x[-1] = weight
    if x.size != announced.setup.length:
        raise ValueError(
            f"an update of {update.size} parameters does not fit a round of {announced.setup.length}"
        )
    if announced.dp is None:
        return unrounded_update(x, announced.ring, rounding_seed(client_id, ring_seed))
    if secret is None:
        seed = rounding_seed(client_id, ring_seed)
    else:
        seed = secagg.derive_scalar(secret, b"rounding %d" % ring_seed)
    return announced.dp.ring_input(x, announced.ring, seed)


def ring_sum(
    total: NDArray[np.uint32], count: int, size: int, announced: SecureSetup
) -> tuple[NDArray[np.float64], float]:
    """From the unmasked sum of `count` clients: sum of w_i x_i over the model's `size` coordinates, sum w_i.

    Both in units of the weight cap (multiply by it for example-weighted sums); under distributed DP the
    (noised) sum of the clipped updates and the count, every weight being 1.
    """
    summed = decode_sum(total, count, announced.setup.length, announced.ring)
    if announced.dp is not None:
        weight_sum, kept = float(count), np.ascontiguousarray(summed, dtype=np.float32)
    else:
        weight_sum, kept = float(summed[-1]), np.ascontiguousarray(summed[:-1], dtype=np.float32)
    if announced.fraction >= 1.0:
        return kept.astype(np.float64), weight_sum
    full = np.zeros(size, dtype=np.float32)
    kernels.mask_scatter_add(kept, full, announced.fraction, announced.ring.seed, 1.0 / announced.fraction)
    return full.astype(np.float64), weight_sum
