"""The protocol-core redesign keeps every number: accuracies and losses per round, pinned from before it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fedcore.config import FLConfig
from fedcore.sim import simulate

PINNED = json.loads((Path(__file__).parent / "data" / "pinned_numbers.json").read_text())

# the `fedcore sim` default job, on two workers as on this machine; clients train one by one, as they did
# (batched training sums in another order, so its numbers differ in the last bits)
DEFAULT = FLConfig(workers=2, vectorize=False)
SHORT = replace(DEFAULT, rounds=12)
TINY = FLConfig(
    clients=12,
    per_round=4,
    rounds=3,
    local_epochs=2,
    batch_size=8,
    lr=0.1,
    workers=0,
    seed=5,
    vectorize=False,
)
JOBS = {
    "default": DEFAULT,
    "codec_ef": replace(SHORT, codec="topk:0.05+quant:8", error_feedback=True),
    "scaffold": replace(SHORT, strategy="scaffold"),
    "partial": replace(SHORT, partial="random:0.5"),
    "powersgd": replace(TINY, powersgd=2),
    "local_head": replace(TINY, local_head=True, codec="eden:1"),
    "downlink": replace(TINY, downlink_codec="quant:8", codec="quant:4:stochastic"),
    "adaptive": replace(TINY, adaptive_deadline_s=0.22, error_feedback=True),
}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_a_job_gives_the_numbers_it_gave_before_the_protocol_core(job: str) -> None:
    result = simulate(JOBS[job])
    pinned = PINNED[job]
    assert [r.accuracy for r in result.records] == pinned["accuracy"]
    assert [r.clients for r in result.records] == pinned["clients"]
    assert [r.loss for r in result.records] == pytest.approx(pinned["loss"], rel=1e-6)
