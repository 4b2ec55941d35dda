"""Secure aggregation in the simulation: every round's sum goes through a full SecAgg+ protocol run.

Each answering client's weighted update is clipped, quantized into the ring (with the round's shared
random-k and rotation), double-masked and summed by the four SecAgg+ stages; the server half sees only
masked vectors and the unmasked sum. In a simulation both halves run in this process, timed per stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fedcore.compression import fedcodec
from fedcore.config import FLConfig
from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.protocol.transport import AggregatorFactory, ReplyInfo, RoundOutcome, Transport, collect_replies
from fedcore.seeds import SECAGG_SEED, derive_seed
from fedcore.strategies.base import FoldSum
from fedcore.uplink.codec import decode_frame

if TYPE_CHECKING:
    from fedcore.privacy.distributed import DistributedDP

# distributed DP sizes each client's noise share so that up to this fraction of a round's SecAgg clients
# may drop inside the protocol and the survivors' shares still reach the accounted variance
SECAGG_DROPOUT_TOLERANCE = 0.05


def secagg_fraction(config: FLConfig) -> float:
    """`--codec randk:F` under secure aggregation: the ring keeps the same seeded F of every update."""
    if config.codec is None or config.codec.raw:
        return 1.0
    ((name, arg),) = config.codec.stages[:1]
    if name != "randk" or len(config.codec.stages) > 1:
        raise ValueError(
            f"--secagg adds codes in the ring, so only linear compression composes: --codec randk:F, got "
            f"'{config.codec}'"
        )
    return float(arg)


@dataclass
class SecureSumResult:
    """The round's fold as the server learns it: the sum over whoever the protocol included."""

    fold: FoldSum
    metrics: dict[str, Any]

    def add(self, reply: Reply) -> Failure | None:
        raise TypeError("a secure sum is finished by the protocol, not folded reply by reply")

    def merge(self, other: SecureSumResult) -> SecureSumResult:
        raise TypeError("a secure sum is one protocol run")

    def finish(self) -> FoldSum:
        return self.fold


class SecureTransport:
    """Runs the round's training on the inner transport, then the SecAgg+ protocol over the replies.

    With `--codec randk:F` every client keeps the same seeded F of its coordinates (the mask is public) and
    the server scales the kept sum by 1/F, as the random-k codec does; the weight coordinate always travels.

    Weights: client i scales its update by w_i = n_i / n_max (n_max: the largest client, public) and adds
    w_i as one more coordinate, so the sum yields both sum w_i x_i and sum w_i: FedAvg's weighted mean,
    without the server seeing any n_i.
    """

    def __init__(self, inner: Transport, config: FLConfig, weight_cap: int) -> None:
        from fedcore.secure import RingConfig

        self._inner = inner
        self._config = config
        self._cap = max(weight_cap, 1)
        self._fraction = secagg_fraction(config)
        # the ring must hold the sum of every client of a round without wrapping
        RingConfig(config.secagg_clip, config.secagg_bits, max(config.per_round, 2))
        self._noise_multiplier: float | None = None  # distributed DP's z, calibrated on first use

    def wait_ready(self, clients: int, timeout_s: float) -> int:
        return self._inner.wait_ready(clients, timeout_s)

    def run_round(
        self, tasks: Sequence[Task], make_aggregator: AggregatorFactory, deadline_s: float | None
    ) -> RoundOutcome:
        from fedcore.secure import RingConfig, SecAggAbort, choose_params, encode_update, secure_sum
        from fedcore.secure.sim import RingInput

        replies, lost = collect_replies(self._inner, tasks, deadline_s)
        if not replies:
            return RoundOutcome(make_aggregator(), (), lost)
        round_num = replies[0].round
        config = self._config
        seed = derive_seed(config.seed, round_num, -1, SECAGG_SEED)
        dp = self._distributed(len(replies))
        updates = {}
        size = 0
        for r in replies:
            # distributed DP: equal weights (the sensitivity is per client), no weight coordinate
            weight = 1.0 if dp is not None else min(r.num_examples, self._cap) / self._cap
            x = decode_frame(r.payloads[0])
            size = x.size
            kept = self._keep(np.ascontiguousarray(weight * x, dtype=np.float32), seed)
            updates[r.client_id] = kept if dp is not None else np.append(kept, np.float32(weight))
        ring = RingConfig(config.secagg_clip, config.secagg_bits, max(config.per_round, 2), seed=seed)
        ring_input: RingInput = encode_update
        if dp is not None:
            length = next(iter(updates.values())).size
            ring = ring.with_headroom(dp.headroom_bits(ring, length))
            ring_input = dp.ring_input
        params = self._params(len(updates), choose_params)
        start = time.perf_counter()
        try:
            total, report, timing = secure_sum(updates, ring, params, seed=ring.seed, ring_input=ring_input)
            if dp is not None and len(report.result.included) < dp.noise_floor:
                raise SecAggAbort(
                    f"{len(report.result.included)} clients survived, fewer than the {dp.noise_floor} whose "
                    "noise shares the accountant charged; the sum is not released"
                )
        except SecAggAbort as exc:
            failures = tuple(
                Failure(round_num, r.client_id, "client_error", f"secure aggregation aborted: {exc}")
                for r in replies
            )
            return RoundOutcome(make_aggregator(), (), (*lost, *failures))
        included = set(report.result.included)
        if dp is not None:  # DP-FedAvg's fixed denominator: the expected cohort, not who answered
            weight_sum = float(config.per_round)
            delta_sum = self._spread(np.ascontiguousarray(total, dtype=np.float32), size, seed)
        else:
            weight_sum = float(total[-1]) * self._cap
            kept_sum = np.ascontiguousarray(total[:-1], dtype=np.float32)
            delta_sum = self._spread(kept_sum, size, seed) * self._cap
        accepted = [r for r in replies if r.client_id in included]
        fold = FoldSum(
            delta_sum=delta_sum,
            weight_sum=weight_sum,
            num_examples=sum(r.num_examples for r in accepted),
            weighted_steps=float(sum(r.num_examples * r.num_steps for r in accepted)),
            count=len(accepted),
        )
        per_client = report.upload_bytes  # one client's masked, bit-packed input
        infos = tuple(
            ReplyInfo(r.client_id, r.num_examples, r.num_steps, r.loss, per_client, r.train_s)
            for r in accepted
        )
        flagged = [
            Failure(round_num, f.client, "client_error", f"secure aggregation: {f.reason}")
            for f in report.result.flagged
        ]
        metrics = {
            "secagg_seconds": round(time.perf_counter() - start, 4),
            "secagg_client_seconds": {k: round(v, 4) for k, v in report.client_seconds.items()},
            "secagg_server_seconds": {k: round(v, 4) for k, v in report.server_seconds.items()},
            "secagg_encode_decode_seconds": {k: round(v, 4) for k, v in timing.items()},
            "secagg_upload_bytes_per_client": report.upload_bytes,
            "secagg_neighbors": params.degree,
            "secagg_threshold": params.threshold,
            "secagg_dropped": list(report.result.dropped),
        }
        if dp is not None:
            length = next(iter(updates.values())).size
            variance = dp.total_variance(ring, length)
            metrics["secagg_dp_noise_floor"] = dp.noise_floor
            metrics["secagg_dp_headroom_bits"] = ring.headroom_bits
            metrics["secagg_dp_noise_std"] = round(math.sqrt(variance) * 2.0 * ring.clip / ring.levels, 6)
            metrics["secagg_dp_effective_noise_multiplier"] = round(
                dp.effective_noise_multiplier(ring, length, variance), 6
            )
        return RoundOutcome(SecureSumResult(fold, metrics), infos, (*lost, *flagged))

    def _distributed(self, clients: int) -> DistributedDP | None:
        """This round's distributed DP (`--dp distributed:CLIP`), noise sized for its SecAgg clients."""
        config = self._config
        if config.dp is None or config.dp.mode != "distributed":
            return None
        from fedcore.privacy.distributed import DistributedDP
        from fedcore.privacy.plan import PrivacyPlan

        if self._noise_multiplier is None:
            plan = PrivacyPlan.from_config(config)
            assert plan is not None
            self._noise_multiplier = plan.noise_multiplier
        clip = config.dp.clip
        assert clip is not None
        return DistributedDP.for_round(clip, self._noise_multiplier, clients, SECAGG_DROPOUT_TOLERANCE)

    def _keep(self, x: NDArray[np.float32], seed: int) -> NDArray[np.float32]:
        """Seeded random-k, the same coordinates for every client of the round; all of them without it."""
        if self._fraction >= 1.0:
            return x
        return np.asarray(fedcodec().kernels.mask_extract(x, self._fraction, seed), dtype=np.float32)

    def _spread(self, kept_sum: NDArray[np.float32], size: int, seed: int) -> NDArray[np.float64]:
        """The kept coordinates back in place, scaled by 1/F as random-k's unbiased estimate is."""
        if self._fraction >= 1.0:
            return kept_sum.astype(np.float64)
        full = np.zeros(size, dtype=np.float32)
        fedcodec().kernels.mask_scatter_add(kept_sum, full, self._fraction, seed, 1.0 / self._fraction)
        return full.astype(np.float64)

    def _params(self, n: int, choose: Any) -> Any:
        from fedcore.secure import SecAggParams

        config = self._config
        if config.secagg_neighbors is not None and config.secagg_threshold is not None:
            return SecAggParams(
                config.secagg_neighbors, config.secagg_threshold, "set by --secagg-neighbors/-threshold"
            )
        try:
            chosen = choose(n, dropout=max(config.dropout, 0.05))
        except ValueError:  # too few clients for SecAgg+'s sparse-graph bounds: every pair, as in SecAgg
            chosen = SecAggParams(
                n - 1,
                n // 2 + 1,
                f"complete graph (Bonawitz et al. 2017): {n} clients are too few for SecAgg+",
            )
        if config.secagg_neighbors is not None or config.secagg_threshold is not None:
            degree = config.secagg_neighbors or chosen.degree
            threshold = config.secagg_threshold or min(chosen.threshold, degree)
            return SecAggParams(degree, threshold, "partly set by flags")
        return chosen

    def close(self) -> None:
        self._inner.close()
