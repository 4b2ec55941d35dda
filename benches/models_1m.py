"""A 1M-parameter model for the digits job: the issue's SecAgg+ workload (1M parameters a client), trained.

    PYTHONPATH=python python benches/bench_sim_secagg.py --model benches.models_1m:digits_mlp_1m
"""

from __future__ import annotations

import torch


def digits_mlp_1m() -> torch.nn.Module:
    """64 pixels -> 1000 -> 1000 -> 10 classes: 1,075,010 parameters."""
    return torch.nn.Sequential(
        torch.nn.Linear(64, 1000),
        torch.nn.ReLU(),
        torch.nn.Linear(1000, 1000),
        torch.nn.ReLU(),
        torch.nn.Linear(1000, 10),
    )
