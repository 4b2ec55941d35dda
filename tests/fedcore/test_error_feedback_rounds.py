"""Error feedback across rounds: what a client's codec dropped in one round goes up in its next one."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from fedcore.config import FLConfig
from fedcore.sim import simulate
from fedcore.uplink import ClientStates, Encoded, UplinkChain, UplinkContext

pytest.importorskip("fedcodec")

EVERY_CLIENT_EVERY_ROUND = FLConfig(
    clients=3, per_round=3, rounds=3, local_epochs=1, codec="topk:0.1", workers=0, seed=2
)


def _residual_hand_offs(monkeypatch: pytest.MonkeyPatch, config: FLConfig) -> dict[int, list[Any]]:
    """Per client, in round order: (residual its state held going in, residual it kept coming out)."""
    seen: dict[int, list[Any]] = defaultdict(list)
    encode = UplinkChain.encode

    def spy(chain: UplinkChain, x: Any, ctx: UplinkContext, states: ClientStates) -> Encoded:
        handed_in = states.get("residual")
        encoded = encode(chain, x, ctx, states)
        seen[ctx.client_id].append((handed_in, states.get("residual")))
        return encoded

    monkeypatch.setattr(UplinkChain, "encode", spy)
    simulate(config)  # workers=0: the clients run in this process, through the spy
    return seen


def test_each_client_starts_a_round_with_the_residual_it_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    config = replace(EVERY_CLIENT_EVERY_ROUND, error_feedback=True)
    seen = _residual_hand_offs(monkeypatch, config)
    assert sorted(seen) == [0, 1, 2]
    for rounds in seen.values():
        assert len(rounds) == 3
        assert rounds[0][0] is None  # nothing owed before the first round
        for (_, kept), (handed_in, _) in pairwise(rounds):
            assert kept is not None
            assert np.count_nonzero(kept) > 0  # top-10 % leaves most of the update behind
            np.testing.assert_array_equal(handed_in, kept)


def test_without_error_feedback_nothing_is_owed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _residual_hand_offs(monkeypatch, EVERY_CLIENT_EVERY_ROUND)
    assert all(handed_in is None and kept is None for rounds in seen.values() for handed_in, kept in rounds)
