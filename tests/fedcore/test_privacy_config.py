"""Bad privacy configs fail at construction with one-line ValueErrors that name the offending value."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fedcore.privacy import (
    Accountant,
    AdaptiveClipping,
    CentralDP,
    DPSpec,
    Sampling,
    SkellamShares,
    calibrate_noise,
    clip_update,
)

POISSON = Sampling.poisson(population=1000, rate=0.1)
FIXED = Sampling.fixed(population=1000, cohort=100)
ONES = np.ones(3, dtype=np.float32)

BAD: list[tuple[str, Callable[[], object], str]] = [
    ("delta >= 1/N", lambda: Accountant(POISSON, 1.0, 1e-3), r"delta must lie in \(0, 1/N\)"),
    ("delta far above 1/N", lambda: Accountant(POISSON, 1.0, 0.5), "population N=1000"),
    ("delta zero", lambda: Accountant(POISSON, 1.0, 0.0), "delta must lie in"),
    ("sigma zero", lambda: Accountant(POISSON, 0.0, 1e-4), "sigma must be a finite number > 0"),
    ("sigma negative", lambda: CentralDP(1.0, -1.0, POISSON), "sigma must be a finite number > 0"),
    ("clip zero", lambda: CentralDP(0.0, 1.0, POISSON), "clip norm must be a finite number > 0"),
    ("clip negative", lambda: clip_update(ONES, -1.0), "clip norm must be"),
    ("clip infinite", lambda: DPSpec("central", clip=float("inf")), "clip norm must be"),
    ("quantile 0", lambda: DPSpec.parse("adaptive:0"), r"target quantile must lie in \(0, 1\)"),
    ("quantile 1", lambda: DPSpec.parse("adaptive:1.0"), r"target quantile must lie in \(0, 1\)"),
    ("quantile 1.5", lambda: AdaptiveClipping(1.5, 1.0, 5.0, POISSON), "target quantile"),
    ("count noise too small", lambda: AdaptiveClipping(0.5, 1.0, 0.4, POISSON), "need 2\\*sigma_b > z"),
    ("unknown mode", lambda: DPSpec.parse("global:1.0"), "bad DP spec 'global:1.0'"),
    ("local without Z", lambda: DPSpec.parse("local:1.0"), "bad DP spec"),
    ("not a number", lambda: DPSpec.parse("central:big"), "bad number in DP spec"),
    ("spec fields mismatch", lambda: DPSpec("central", quantile=0.5), "takes 'central:CLIP'"),
    ("local Z zero", lambda: DPSpec.parse("local:1.0,0"), "noise multiplier Z must be"),
    ("rate above 1", lambda: Sampling.poisson(100, 1.5), r"sampling rate must lie in \(0, 1\]"),
    ("cohort above N", lambda: Sampling.fixed(10, 11), "cohort must lie in"),
    ("PLD with fixed size", lambda: Accountant(FIXED, 1.0, 1e-4, "pld"), "PLD has no event for fixed-size"),
    ("unknown accountant", lambda: Accountant(POISSON, 1.0, 1e-4, "gdp"), "accountant must be"),  # type: ignore
    ("target epsilon zero", lambda: calibrate_noise(0.0, 1e-4, POISSON, 10), "target epsilon"),
    ("skellam variance", lambda: SkellamShares(0.0, 3), "total noise variance"),
]


@pytest.mark.parametrize(("case", "make", "message"), BAD, ids=[case for case, _, _ in BAD])
def test_bad_config_is_a_one_line_value_error(case: str, make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value), case
