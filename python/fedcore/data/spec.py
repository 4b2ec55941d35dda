"""The typed `--dataset` and `--partition` specs: parsed once, printed back the way a user writes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedcore.spec_text import format_number

DatasetKind = Literal["digits", "mnist1d", "synthetic", "npz", "leaf"]
PartitionKind = Literal["iid", "dirichlet", "shards"]

_DATASET_FORMS = "digits, mnist1d[:SAMPLES], synthetic:ALPHA,BETA, npz:PATH or leaf:PATH"
_PARTITION_FORMS = "iid, dirichlet:ALPHA (> 0) or shards:S (> 0)"


@dataclass(frozen=True)
class DatasetSpec:
    """A built-in dataset and its numbers, or a file (`npz:`, `leaf:`) read when the data is loaded."""

    kind: DatasetKind
    samples: int | None = None  # mnist1d only; None: the generator's default
    alpha: float = 0.0  # synthetic only
    beta: float = 0.0  # synthetic only
    path: str = ""  # npz and leaf only

    def __post_init__(self) -> None:
        if self.kind not in ("digits", "mnist1d", "synthetic", "npz", "leaf"):
            raise ValueError(f"dataset must be {_DATASET_FORMS}, got {self.kind!r}")
        if (self.kind in ("npz", "leaf")) != bool(self.path):
            raise ValueError(f"only npz and leaf datasets name a file, got {self}")
        if self.samples is not None and (self.kind != "mnist1d" or self.samples < 1):
            raise ValueError(f"only mnist1d takes a sample count (>= 1), got {self}")

    @classmethod
    def parse(cls, text: str) -> DatasetSpec:
        """`digits`, `mnist1d`, `mnist1d:8000`, `synthetic:1,1`, `npz:PATH` or `leaf:PATH`."""
        kind, _, arg = text.strip().partition(":")
        if kind == "digits" and not arg:
            return cls("digits")
        if kind == "mnist1d" and (not arg or (arg.isdigit() and int(arg) > 0)):
            return cls("mnist1d", samples=int(arg) if arg else None)
        if kind == "synthetic":
            numbers = arg.split(",")
            try:
                alpha, beta = (float(n) for n in numbers)
            except ValueError:
                pass
            else:
                return cls("synthetic", alpha=alpha, beta=beta)
        if kind in ("npz", "leaf") and arg:
            return cls(kind, path=arg)  # type: ignore[arg-type]  # narrowed by the test above
        raise ValueError(f"dataset must be {_DATASET_FORMS}, got {text!r}")

    def __str__(self) -> str:
        if self.kind == "mnist1d" and self.samples is not None:
            return f"mnist1d:{self.samples}"
        if self.kind == "synthetic":
            return f"synthetic:{format_number(self.alpha)},{format_number(self.beta)}"
        if self.kind in ("npz", "leaf"):
            return f"{self.kind}:{self.path}"
        return self.kind


@dataclass(frozen=True)
class PartitionSpec:
    """How a pooled dataset is dealt to clients: evenly, by Dirichlet label skew, or by label shards."""

    kind: PartitionKind
    alpha: float | None = None  # dirichlet only
    shards: int | None = None  # shards only: label shards per client

    def __post_init__(self) -> None:
        ok = (
            (self.kind == "iid" and self.alpha is None and self.shards is None)
            or (
                self.kind == "dirichlet" and self.alpha is not None and self.alpha > 0 and self.shards is None
            )
            or (self.kind == "shards" and self.shards is not None and self.shards > 0 and self.alpha is None)
        )
        if not ok:
            raise ValueError(f"partition must be {_PARTITION_FORMS}, got {self!r}")

    @classmethod
    def parse(cls, text: str) -> PartitionSpec:
        """`iid`, `dirichlet:0.5` or `shards:2`."""
        kind, _, arg = text.strip().partition(":")
        try:
            if kind == "iid" and not arg:
                return cls("iid")
            if kind == "dirichlet" and arg:
                return cls("dirichlet", alpha=float(arg))
            if kind == "shards" and arg.isdigit():
                return cls("shards", shards=int(arg))
        except ValueError:
            pass
        raise ValueError(f"partition must be {_PARTITION_FORMS}, got {text!r}")

    def __str__(self) -> str:
        if self.kind == "dirichlet":
            return f"dirichlet:{format_number(self.alpha or 0.0)}"
        if self.kind == "shards":
            return f"shards:{self.shards}"
        return "iid"
