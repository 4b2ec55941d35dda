"""Adaptive uplink in the simulator: each client's codec from its simulated bandwidth and training time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedcore.adaptive import AdaptiveCodecPolicy, Choice, megabits_to_bytes_per_s, parse_ladder
from fedcore.config import FLConfig
from fedcore.selection import AvailabilityModel
from fedcore.sim.seeds import DEVICE_SPEED_SEED, derive_seed

MEDIAN_SECONDS_PER_STEP = 0.01
_SPEED_SPREAD = 0.5  # lognormal sigma: a tenth of the devices are ~2x slower than the median


def seconds_per_step(seed: int, client_id: int) -> float:
    """A device's fixed training speed, seeded per client, so picks never depend on this machine's clock."""
    rng = np.random.default_rng(derive_seed(seed, 0, client_id, DEVICE_SPEED_SEED))
    return float(rng.lognormal(np.log(MEDIAN_SECONDS_PER_STEP), _SPEED_SPREAD))


@dataclass(frozen=True)
class AdaptiveUplink:
    """The policy plus simulated devices: bandwidth from `devices`, training time = steps x device speed."""

    policy: AdaptiveCodecPolicy
    devices: AvailabilityModel
    num_clients: int
    seed: int

    @classmethod
    def from_config(cls, config: FLConfig, devices: AvailabilityModel) -> AdaptiveUplink | None:
        """None unless the config sets an adaptive deadline."""
        if config.adaptive_deadline_s is None:
            return None
        policy = AdaptiveCodecPolicy(parse_ladder(config.adaptive_ladder), config.adaptive_deadline_s)
        return cls(policy, devices, config.clients, config.seed)

    def choose(self, round_num: int, steps: Mapping[int, int], n: int) -> dict[int, Choice]:
        """Each client's pick for an upload of n float32, given the local steps it trains this round."""
        bandwidth = self.devices.conditions(round_num, self.num_clients).bandwidth_mbps
        return {
            cid: self.policy.choose(
                n, megabits_to_bytes_per_s(float(bandwidth[cid])), count * seconds_per_step(self.seed, cid)
            )
            for cid, count in steps.items()
        }
