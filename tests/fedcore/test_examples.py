"""Every script in examples/ runs as a user would run it, for two rounds (timings: the closing notes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fedcore
from fedcore.data import FederatedData

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT_S = 300.0  # a hang guard, not a speed target


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_runs_for_two_rounds(script: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(fedcore.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--rounds", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_from_arrays_checks_what_it_is_given() -> None:
    rng = np.random.default_rng(0)
    rows = {cid: (rng.standard_normal((10, 3)), rng.integers(0, 4, 10)) for cid in range(3)}
    data = FederatedData.from_arrays(rows, test=(rng.standard_normal((5, 3)), np.arange(5)))
    assert (data.num_clients, data.n_classes, data.in_features) == (3, 5, 3)
    assert [len(c.train) + len(c.test) for c in data.clients] == [10, 10, 10]
    with pytest.raises(ValueError, match=r"client ids must be 0\.\.1"):
        FederatedData.from_arrays({0: rows[0], 5: rows[1]}, test=rows[2])
    with pytest.raises(ValueError, match="same row shape"):
        FederatedData.from_arrays({0: rows[0]}, test=(np.zeros((2, 4)), np.zeros(2, int)))
    with pytest.raises(ValueError, match="labels must be integers"):
        FederatedData.from_arrays({0: (rows[0][0], rows[0][1] + 0.5)}, test=rows[1])
