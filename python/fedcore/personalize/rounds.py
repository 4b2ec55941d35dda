"""Personalization inside the rounds: FedRep's local head and Ditto's personal model, kept per client.

Both run on every client that takes part in a round, in the worker that trains it; what they keep
(the head's values, the personal model) goes back to the engine's ClientMemory and is never uploaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import FitResult, ModelAdapter, TrainConfig
from fedcore.compression import Vector
from fedcore.layout import ParamLayout
from fedcore.personalize.frozen import fit_steps
from fedcore.personalize.spec import PersonalizeSpec
from fedcore.personalize.split import head_mask

if TYPE_CHECKING:  # masks import the fedcodec extension; runs without a local head need not
    from fedcore.partial import Mask


@dataclass(frozen=True)
class LocalHead:
    """FedRep in rounds (Collins et al. 2021): head epochs on a frozen body, then body on a frozen head.

    `head` marks the output layer's coordinates; they never leave the client, so only the body is
    uploaded and averaged. A client that has no head yet starts from the global one, which the server
    never trains: the initial head.
    """

    head: NDArray[np.bool_]
    head_epochs: int
    body_epochs: int

    def __post_init__(self) -> None:
        if self.head_epochs < 1 or self.body_epochs < 1:
            raise ValueError(
                f"local-head epochs must be >= 1, got head {self.head_epochs}, body {self.body_epochs}"
            )
        if self.head.all() or not self.head.any():
            raise ValueError("the head must be some but not all of the model's coordinates")

    @cached_property
    def body(self) -> Mask:
        """The shared coordinates as a partial-sharing mask, so codecs and error feedback see only them."""
        from fedcore.partial import Mask

        return Mask.from_bool(~self.head)

    def with_head(self, weights: Vector, own: Vector | None) -> Vector:
        """`weights` with this client's own head in place; `weights` as they are when it has none yet."""
        if own is None:
            return weights
        merged = np.array(weights, dtype=np.float32)
        merged[self.head] = own
        return merged

    def fit(
        self, adapter: ModelAdapter, x: NDArray[np.float32], y: NDArray[np.int64], config: TrainConfig
    ) -> FitResult:
        """The head, then the body; the body phase's result is the one that made the uploaded update.

        FedProx's proximal term (config.prox_mu) pulls the body toward the weights this round started from.
        """
        anchor = adapter.get_weights() if config.prox_mu > 0.0 else None
        fit_steps(adapter, x, y, replace(config, epochs=self.head_epochs), trainable=self.head)
        body = replace(config, epochs=self.body_epochs, seed=config.seed + 1)
        return fit_steps(adapter, x, y, body, trainable=~self.head, anchor=anchor, lam=config.prox_mu)

    def mean_head(self, heads: Mapping[int, Vector]) -> Vector:
        """The unweighted mean of the clients' heads, in client order: one head the server could send all."""
        stacked = np.stack([heads[cid] for cid in sorted(heads)])
        return np.asarray(stacked.mean(axis=0), dtype=np.float32)


@dataclass(frozen=True)
class DittoRounds:
    """Ditto (Li et al. 2021) in rounds: each selected client also trains its personal model v.

    Beside its usual update of the global model, the client runs its local epochs of plain SGD on
    F_k(v) + lam/2 ||v - w||^2, w being the global weights it received this round; v is never uploaded.
    """

    lam: float

    def __post_init__(self) -> None:
        if not self.lam > 0.0:
            raise ValueError(f"ditto lambda must be > 0, got {self.lam}")

    def update(
        self,
        adapter: ModelAdapter,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        personal: Vector | None,
        received: Vector,
        config: TrainConfig,
    ) -> Vector:
        """v after this round's personal epochs; v starts as the first global weights the client receives."""
        adapter.set_weights(received if personal is None else personal)
        fit_steps(adapter, x, y, config, anchor=received, lam=self.lam)
        return adapter.get_weights()


def make_local_head(personalize: PersonalizeSpec | None, local_epochs: int, layout: ParamLayout) -> LocalHead:
    """`fedrep:H,B` sets the head and body epochs; a missing (or zero) number means the run's local epochs."""
    head_epochs = body_epochs = local_epochs
    if personalize is not None:
        if personalize.method != "fedrep":
            raise ValueError(
                f"a local head is FedRep in rounds; --personalize must be fedrep, got '{personalize}'"
            )
        head_epochs = personalize.epochs or local_epochs
        body_epochs = personalize.body_epochs or local_epochs
    return LocalHead(head_mask(layout), head_epochs, body_epochs)


def make_ditto_rounds(personalize: PersonalizeSpec | None) -> DittoRounds:
    """Ditto's lambda from `ditto:LAMBDA`; any other spec is refused."""
    if personalize is None or personalize.method != "ditto":
        raise ValueError(f"ditto in rounds needs --personalize ditto:LAMBDA, got '{personalize}'")
    return DittoRounds(personalize.lam)
