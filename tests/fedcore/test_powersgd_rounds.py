"""PowerSGD in the loop: each client's warm start and residual survive between the rounds it joins."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from fakes import kept_stage, raw_frame_nbytes

from fedcore.config import FLConfig
from fedcore.powersgd import PowerSGD
from fedcore.sim import simulate
from fedcore.sim.workers import build_model, load_data

TINY = FLConfig(clients=6, per_round=4, rounds=4, local_epochs=2, batch_size=8, lr=0.1, workers=0, seed=5)


@pytest.mark.parametrize("workers", [0, 2])
def test_each_client_keeps_its_powersgd_state_between_rounds(workers: int) -> None:
    result = simulate(replace(TINY, powersgd=2, workers=workers))
    turns = Counter(cid for record in result.records for cid in record.clients)
    assert max(turns.values()) >= 3  # the state has rounds to survive
    kept = kept_stage(result.clients, "powersgd")
    assert set(kept) == set(turns)
    for cid, count in turns.items():
        compressor = kept[cid]
        assert compressor.calls == count  # a forgotten compressor would have started over
        assert np.any(compressor.residual != 0.0)


def test_uplink_bytes_are_one_raw_frame_of_the_payloads_values() -> None:
    config = replace(TINY, powersgd=2)
    result = simulate(config)
    layout = build_model(config, load_data(config)).layout
    payload = PowerSGD(2, layout, seed=0).compress(np.zeros(layout.size, np.float32))
    for record in result.records:
        assert record.uplink_bytes == raw_frame_nbytes(payload.to_vector().size) * len(record.clients)
    assert result.summary["powersgd_rank"] == 2


def test_powersgd_learns_with_a_tenth_of_the_bytes() -> None:
    config = replace(TINY, clients=12, rounds=8, local_epochs=5)
    result = simulate(replace(config, powersgd=2))
    assert result.summary["uplink_ratio"] > 10.0
    assert result.summary["final_accuracy"] > 0.4  # ten classes: chance is 0.1


@pytest.mark.parametrize("changes", [{"powersgd": 0}, {"powersgd": 2, "codec": "quant:8"}])
def test_config_rejects_bad_powersgd_settings(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="powersgd"):
        replace(TINY, **changes)


def test_powersgd_with_partial_sharing_trains() -> None:  # (test_partial_rounds: unshared ones hold)
    config = replace(TINY, clients=12, rounds=6, local_epochs=5, powersgd=2, partial="random:0.5")
    result = simulate(config)
    assert all(r.mask_fraction == pytest.approx(0.5, abs=0.03) for r in result.records)
    accuracies = [r.accuracy for r in result.records]
    assert all(np.isfinite(a) for a in accuracies)
    assert accuracies[-1] > 0.3  # ten classes: chance is 0.1
    assert set(kept_stage(result.clients, "powersgd")) == {c for r in result.records for c in r.clients}


def test_error_feedback_in_front_of_powersgd_replaces_its_own_residual() -> None:
    config = replace(TINY, powersgd=2, partial="random:0.5", error_feedback=True)
    result = simulate(config)
    residuals, compressors = kept_stage(result.clients, "residual"), kept_stage(result.clients, "powersgd")
    assert set(residuals) == set(compressors) == {c for r in result.records for c in r.clients}
    for compressor in compressors.values():
        assert not compressor.error_feedback
        assert not compressor.residual.any()
    assert all(residual.any() for residual in residuals.values())
    assert np.isfinite([r.accuracy for r in result.records]).all()


def test_error_feedback_composes_with_powersgd_alone() -> None:
    result = simulate(replace(TINY, powersgd=2, error_feedback=True))
    assert set(kept_stage(result.clients, "residual")) == set(kept_stage(result.clients, "powersgd"))
    assert np.isfinite([r.accuracy for r in result.records]).all()
