"""Derived seeds: one independent stream per (run seed, round, client, purpose)."""

from __future__ import annotations

import numpy as np

# Purposes mixed into derived seeds, so each random use gets its own stream.
TRAIN_SEED = 1
CODEC_SEED = 2
DOWNLINK_SEED = 3
CONTROL_DOWNLINK_SEED = 4
STRAGGLER_SEED = 5
POWERSGD_SEED = 6
PERSONALIZE_SEED = 7
DEVICE_SPEED_SEED = 8
DP_NOISE_SEED = 9
ATTACK_SEED = 10
SECAGG_SEED = 11


def derive_seed(seed: int, round_num: int, client_id: int, purpose: int) -> int:
    """A 32-bit seed that depends only on (run seed, round, client, purpose); client -1 is the server."""
    state = np.random.SeedSequence([seed, round_num, client_id + 1, purpose]).generate_state(1)
    return int(state[0])
