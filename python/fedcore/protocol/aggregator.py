"""The aggregator protocol: fold client replies one at a time, merge partial folds, finish into a fold sum."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from fedcore.protocol.messages import Failure, Reply
from fedcore.strategies.base import FoldSum

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated at runtime
    from typing import Self


class Aggregator(Protocol):
    """start (the factory) / add / merge / finish; `add` is all-or-nothing and names what it refused."""

    def add(self, reply: Reply) -> Failure | None:
        """Fold one reply; one that does not decode leaves the aggregate as it was and comes back refused."""
        ...

    def merge(self, other: Self) -> Self:
        """This fold followed by `other`'s, in that order (workers' partial folds combine this way)."""
        ...

    def finish(self) -> FoldSum:
        """The round's fold, which the strategy turns into new weights."""
        ...
