"""Error feedback across rounds: what a client's codec dropped in one round goes up in its next one."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

import fedcore.client
from fedcore.config import FLConfig
from fedcore.sim import simulate

pytest.importorskip("fedcodec")

EVERY_CLIENT_EVERY_ROUND = FLConfig(
    clients=3, per_round=3, rounds=3, local_epochs=1, codec="topk:0.1", workers=0, seed=2
)


def _residual_hand_offs(monkeypatch: pytest.MonkeyPatch, config: FLConfig) -> dict[int, list[Any]]:
    """Per client, in round order: (residual the engine handed in, residual the client handed back)."""
    seen: dict[int, list[Any]] = defaultdict(list)
    encode_delta = fedcore.client._encode_delta

    def spy(delta: Any, task: Any, encoder: Any, mask: Any) -> Any:
        payload, residual = encode_delta(delta, task, encoder, mask)
        seen[task.client_id].append((task.residual, residual))
        return payload, residual

    monkeypatch.setattr(fedcore.client, "_encode_delta", spy)
    simulate(config)
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
