"""Example-level DP on a client: its local training as DP-SGD, with its own accountant over all its steps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import ModelAdapter, TrainConfig
from fedcore.backends.batches import count_steps
from fedcore.client.state import ClientState
from fedcore.config import FLConfig
from fedcore.privacy.spec import DPSpec

STEPS_KEY = "dp_sgd_steps"


@dataclass(frozen=True)
class LocalFit:
    """A DP-SGD round's counts, its metrics (the client's epsilon so far) and the state it keeps."""

    num_examples: int
    num_steps: int
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalDP:
    """`--dp local:CLIP,Z`: Poisson-sampled batches at rate B/n, per-sample clip, noise Z*CLIP per step."""

    spec: DPSpec
    delta: float | None = None  # None: 0.1 / the client's example count

    @classmethod
    def from_config(cls, config: FLConfig) -> LocalDP | None:
        if config.dp is None:
            return None
        return None if config.dp.user_level else cls(config.dp, config.delta)

    def fit(
        self,
        adapter: ModelAdapter,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        train: TrainConfig,
        state: ClientState,
    ) -> LocalFit:
        """Trains the adapter's torch module in place; epsilon counts every step this client ever took."""
        from fedcore.privacy.dpsgd import DPSGD

        module = getattr(adapter, "module", None)
        if module is None:
            raise ValueError("DP-SGD (--dp local) needs the torch backend")
        n = len(y)
        batch = min(train.batch_size, n)
        steps = count_steps(n, replace(train, batch_size=batch))
        dp = DPSGD.from_spec(self.spec, batch, train.lr, steps)
        result = dp.fit(module, x, y, seed=train.seed)
        total = int(state.stages.get(STEPS_KEY, 0)) + steps
        delta = self.delta if self.delta is not None else 0.1 / n
        epsilon = dp.accountant(n, delta, "rdp").epsilon(total)
        loss = adapter.evaluate(x, y).loss
        metrics = {"local_epsilon": epsilon, "dp_clipped_fraction": result.clipped_fraction}
        return LocalFit(n, steps, loss, metrics, {STEPS_KEY: total})
