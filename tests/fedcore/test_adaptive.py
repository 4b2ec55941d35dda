"""Adaptive compression: the best rung that meets the deadline, else the smallest, on real frame sizes."""

from __future__ import annotations

import numpy as np
import pytest

import fedcodec as fc
from fedcore import adaptive
from fedcore.adaptive import (
    DEFAULT_LADDER,
    AdaptiveCodecPolicy,
    Choice,
    frame_nbytes,
    megabits_to_bytes_per_s,
)

N = 1000


def _quant8_bytes() -> int:
    return len(fc.Quantize(8).encode(np.ones(N, dtype=np.float32)))


def test_frame_sizes_are_raw_floats_or_real_frames() -> None:
    assert frame_nbytes("none", N) == 4 * N
    q8 = frame_nbytes("quant:8", N)
    assert q8 == _quant8_bytes()  # quantized frames have the same length for any input of that size
    assert N < q8 < 4 * N
    with pytest.raises(ValueError, match="n must be"):
        frame_nbytes("quant:8", 0)


@pytest.mark.parametrize(
    ("train_s", "spec"),
    [
        (5.0, "none"),  # 5 s + 4000 B / 1000 B/s = 9 s <= 10 s
        (6.0, "none"),  # 6 s + 4 s lands exactly on the deadline: still in time
        (7.0, "quant:8"),  # raw would end at 11 s; 8-bit ends at 7 + ~1.05 s
    ],
)
def test_choose_the_best_rung_that_meets_the_deadline(train_s: float, spec: str) -> None:
    policy = AdaptiveCodecPolicy(("none", "quant:8"), deadline_s=10.0)
    nbytes = 4 * N if spec == "none" else _quant8_bytes()
    expected = Choice(spec, nbytes, nbytes / 1000, True)
    assert policy.choose(N, bandwidth_bps=1000.0, train_s=train_s) == expected


def test_when_nothing_fits_the_smallest_rung_is_sent_and_flagged_late() -> None:
    policy = AdaptiveCodecPolicy(("none", "quant:8"), deadline_s=10.0)
    q8 = _quant8_bytes()
    assert policy.choose(N, bandwidth_bps=1000.0, train_s=9.5) == Choice("quant:8", q8, q8 / 1000, False)


def test_ladder_order_is_quality_order_not_size_order() -> None:
    policy = AdaptiveCodecPolicy(["quant:4", "none"], deadline_s=100.0)
    assert policy.ladder == ("quant:4", "none")
    assert policy.choose(N, bandwidth_bps=1e9, train_s=0.0).spec == "quant:4"
    late = AdaptiveCodecPolicy(("none", "topk:0.01+quant:8", "quant:8"), deadline_s=1.0)
    choice = late.choose(N, bandwidth_bps=1.0, train_s=0.0)
    assert choice.spec == "topk:0.01+quant:8"
    assert not choice.meets_deadline


def test_default_ladder_spans_raw_to_sparse() -> None:
    policy = AdaptiveCodecPolicy(DEFAULT_LADDER, deadline_s=10.0)
    assert policy.choose(N, bandwidth_bps=1e9, train_s=1.0).spec == "none"
    slowest = policy.choose(N, bandwidth_bps=1.0, train_s=1.0)
    sizes = [policy.expected_bytes(spec, N) for spec in DEFAULT_LADDER]
    assert slowest.expected_bytes == min(sizes)
    assert slowest.expected_bytes < 0.05 * 4 * N
    assert not slowest.meets_deadline


def test_frame_sizes_are_measured_once_per_spec_and_size(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []

    def counting(spec: str, n: int) -> int:
        calls.append((spec, n))
        return 4 * n

    monkeypatch.setattr(adaptive, "frame_nbytes", counting)
    policy = AdaptiveCodecPolicy(("none", "quant:8"), deadline_s=1.0)
    for _ in range(3):
        policy.choose(N, bandwidth_bps=1.0, train_s=0.0)
    policy.choose(2 * N, bandwidth_bps=1.0, train_s=0.0)
    assert calls == [("none", N), ("quant:8", N), ("none", 2 * N), ("quant:8", 2 * N)]


def test_megabits_convert_to_bytes() -> None:
    assert megabits_to_bytes_per_s(8.0) == 1e6


def test_policy_and_choose_validate_inputs() -> None:
    with pytest.raises(ValueError, match="at least one"):
        AdaptiveCodecPolicy((), deadline_s=1.0)
    with pytest.raises(ValueError, match="quant"):
        AdaptiveCodecPolicy(("quant:99",), deadline_s=1.0)
    with pytest.raises(ValueError, match="deadline"):
        AdaptiveCodecPolicy(("none",), deadline_s=0.0)
    policy = AdaptiveCodecPolicy(("none",), deadline_s=1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        policy.choose(N, bandwidth_bps=0.0, train_s=0.0)
    with pytest.raises(ValueError, match="train_s"):
        policy.choose(N, bandwidth_bps=1.0, train_s=-1.0)
