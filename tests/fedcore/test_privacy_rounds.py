"""Differential privacy inside rounds: clipping on the client, noise once on the server, epsilon per round."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant

from fedcore.cli import main
from fedcore.config import FLConfig
from fedcore.layout import ParamLayout
from fedcore.privacy.plan import PrivacyPlan
from fedcore.protocol.messages import Reply
from fedcore.server.aggregation import FoldContext
from fedcore.server.private_fold import PrivateFold, RoundNoise
from fedcore.sim import simulate
from fedcore.strategies import FedAvg
from fedcore.uplink import UplinkChain, UplinkContext, encode_frame

TINY = FLConfig(clients=20, per_round=5, rounds=4, local_epochs=1, workers=0, seed=2)
CENTRAL = replace(TINY, dp="central:0.5", noise_multiplier=1.2)


def rdp_epsilon(population: int, cohort: int, sigma: float, rounds: int, delta: float) -> float:
    """What dp-accounting itself says for fixed-size sampling, replace-one neighbours (sensitivity 2C)."""
    accountant = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        population, cohort, dp_accounting.GaussianDpEvent(sigma / 2)
    )
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(delta))


def test_each_round_records_the_epsilon_the_accountant_gives() -> None:
    result = simulate(CENTRAL)
    delta = 0.1 / CENTRAL.clients
    expected = [rdp_epsilon(20, 5, 1.2, r, delta) for r in range(1, 5)]
    assert [r.epsilon for r in result.records] == pytest.approx(expected, rel=1e-6)
    assert result.summary["epsilon"] == pytest.approx(expected[-1], rel=1e-6)
    assert result.summary["delta"] == delta
    assert result.summary["noise_multiplier"] == 1.2
    assert result.summary["accountant"].startswith("rdp")
    assert all(r.dp_clip == 0.5 for r in result.records)


def test_max_epsilon_stops_at_the_last_round_that_fits() -> None:
    delta = 0.1 / CENTRAL.clients
    budget = (rdp_epsilon(20, 5, 1.2, 2, delta) + rdp_epsilon(20, 5, 1.2, 3, delta)) / 2
    result = simulate(replace(CENTRAL, max_epsilon=budget))
    assert result.summary["rounds"] == 2
    assert "stopped after round 2" in result.summary["stopped_by_budget"]


def test_target_epsilon_calibrates_the_noise_to_within_a_thousandth() -> None:
    plan = PrivacyPlan.from_config(replace(TINY, dp="central:1.0", target_epsilon=3.0))
    assert plan is not None
    assert 3.0 - 1e-3 <= plan.epsilons[-1] <= 3.0


def test_clipped_updates_reach_the_server_with_norm_at_most_the_clip() -> None:
    layout = ParamLayout.from_shapes([("w", (1000,))])
    chain = UplinkChain.from_config(replace(CENTRAL, codec=None))
    big = np.full(1000, 3.0, dtype=np.float32)
    encoded = chain.encode(big, UplinkContext(layout, clip=0.5), {})
    assert float(np.linalg.norm(encoded.reconstruct())) <= 0.5
    assert encoded.metrics["dp_unclipped"] == 0.0


def test_the_server_adds_gaussian_noise_of_std_sigma_c_once() -> None:
    size, clip, sigma, cohort = 200_000, 0.5, 1.2, 5.0
    layout = ParamLayout.from_shapes([("w", (size,))])
    ctx = FoldContext(
        size, UplinkChain.from_config(TINY), UplinkContext(layout), FedAvg(), equal_weights=True
    )
    fold = PrivateFold(ctx, RoundNoise(clip, sigma, cohort, seed=7))
    zero = encode_frame(None, np.zeros(size, dtype=np.float32), 0)
    for cid in range(2):
        assert fold.add(Reply(0, cid, (zero,), num_examples=10, num_steps=1, loss=0.0)) is None
    result = fold.finish()
    std = float(np.std(result.delta_sum))
    standard_error = sigma * clip / np.sqrt(2 * size)
    assert abs(std - sigma * clip) < 3 * standard_error
    assert result.weight_sum == cohort  # a fixed denominator, not the count of replies


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dp", "central:0"], "clip norm must be a finite number > 0"),
        (
            ["--dp", "central:1", "--noise-multiplier", "0"],
            "noise multiplier sigma must be a finite number > 0",
        ),
        (["--dp", "central:1", "--noise-multiplier", "1", "--delta", "0.5"], "delta must lie in (0, 1/N)"),
        (["--dp", "central:1"], "needs exactly one of --noise-multiplier Z or --target-epsilon E"),
        (["--dp", "adaptive:1.5", "--noise-multiplier", "1"], "target quantile must lie in (0, 1)"),
        (["--noise-multiplier", "1"], "--noise-multiplier needs --dp"),
        (["--dp", "central:1", "--noise-multiplier", "1", "--strategy", "scaffold"], "equal weights"),
    ],
)
def test_a_bad_dp_config_is_one_line_and_exit_code_2(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "--rounds", "1", "--out", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "rounds.jsonl").exists()


def test_local_dp_sgd_records_each_clients_epsilon(tmp_path: Path) -> None:
    out = tmp_path / "local"
    assert (
        main(
            [
                "sim",
                "--rounds",
                "2",
                "--clients",
                "10",
                "--per-round",
                "3",
                "--local-epochs",
                "1",
                "--dp",
                "local:1.0,1.1",
                "--workers",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert all(r["local_epsilon"] > 0 for r in rounds)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["local_epsilon_max"] == max(r["local_epsilon"] for r in rounds)
