"""Round records as JSON Lines and the run summary; all but the timing fields are a function of the seed."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated at runtime
    from typing import Self

# Wall-clock fields: the only ones allowed to differ between two runs with the same seed.
TIMING_KEYS = ("wall_s", "train_s", "eval_s", "timing")


@dataclass(frozen=True)
class RoundRecord:
    """What happened in one round: who took part, what the global model scores, what crossed the network."""

    round: int
    clients: list[int]  # clients whose update was aggregated
    selected: int
    dropouts: list[int]
    unavailable: int
    accuracy: float
    loss: float
    train_loss: float
    uplink_bytes: int
    downlink_bytes: int
    wall_s: float
    train_s: float  # summed local-training (fit) time of this round's clients
    eval_s: float  # evaluating the new global model
    client_accuracy: float | None = None
    mask_fraction: float | None = None  # share of coordinates uploaded under partial sharing
    codecs: dict[str, int] | None = None  # adaptive compression: clients per picked codec spec
    late: list[int] | None = None  # adaptive: clients whose smallest upload still missed the deadline
    personal_accuracy: float | None = None  # in-round personalization: mean over clients, own model, own test
    diverged: list[int] = field(default_factory=list)  # clients whose training went non-finite: dropped
    refused: list[int] = field(default_factory=list)  # replies the server refused (bad frames, wrong round)
    epsilon: float | None = None  # user-level DP: epsilon spent after this round (at the run's delta)
    dp_clip: float | None = None  # user-level DP: the clip norm this round used
    local_epsilon: float | None = None  # DP-SGD: the largest epsilon any of this round's clients has spent
    suspicion: dict[str, float] | None = None  # robust aggregators: client id -> suspicion (> 1 suspect)
    suspicion_weight: float | None = None  # robust aggregators: how much this round's scores count
    secagg: dict[str, Any] | None = None  # secure aggregation: seconds per stage, bytes, who was dropped
    backdoor_accuracy: float | None = None  # backdoor attack: share of triggered test inputs on the target
    virtual_s: float | None = None  # simulated clock at the end of this round (device speeds), cumulative
    staleness: list[int] | None = None  # async (FedBuff): each buffered update's versions behind, in order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class RoundsWriter:
    """Appends one JSON line per round and flushes, so a crashed run still leaves its history."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = path.open("w", encoding="utf-8")

    def write(self, record: RoundRecord) -> None:
        self._file.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_rounds(path: Path) -> list[RoundRecord]:
    with path.open(encoding="utf-8") as f:
        return [RoundRecord.from_dict(json.loads(line)) for line in f if line.strip()]


def summarize(
    records: Sequence[RoundRecord],
    model_size: int,
    config: Mapping[str, Any],
    wall_s: float,
    vectors_per_message: int = 1,
) -> dict[str, Any]:
    """The run in one object; uplink_ratio = the same messages' bytes as raw float32 / bytes actually sent.

    `vectors_per_message` is 2 for SCAFFOLD, whose messages carry a control variate beside the model.
    """
    uplink = sum(r.uplink_bytes for r in records)
    downlink = sum(r.downlink_bytes for r in records)
    raw = 4 * model_size * vectors_per_message
    raw_uplink = raw * sum(len(r.clients) for r in records)
    raw_downlink = raw * sum(r.selected for r in records)
    last = records[-1] if records else None
    fractions = [r.mask_fraction for r in records if r.mask_fraction is not None]
    adaptive = [r for r in records if r.codecs is not None]
    picks: Counter[str] = Counter()
    for r in adaptive:
        picks.update(r.codecs or {})
    return {
        "rounds": len(records),
        "final_accuracy": last.accuracy if last else None,
        "final_loss": last.loss if last else None,
        "best_accuracy": max((r.accuracy for r in records), default=None),
        "final_client_accuracy": last.client_accuracy if last else None,
        "final_personal_accuracy": last.personal_accuracy if last else None,
        "uplink_bytes": uplink,
        "downlink_bytes": downlink,
        "uplink_ratio": raw_uplink / uplink if uplink else None,
        "downlink_ratio": raw_downlink / downlink if downlink else None,
        "model_size": model_size,
        "updates_aggregated": sum(len(r.clients) for r in records),
        "dropouts": sum(len(r.dropouts) for r in records),
        "diverged_updates": sum(len(r.diverged) for r in records),
        "unavailable": sum(r.unavailable for r in records),
        "partial": config.get("partial"),
        "mean_mask_fraction": sum(fractions) / len(fractions) if fractions else None,
        "powersgd_rank": config.get("powersgd"),
        "adaptive_codecs": dict(sorted(picks.items())) if adaptive else None,
        "late_uploads": sum(len(r.late or ()) for r in adaptive) if adaptive else None,
        "virtual_s": last.virtual_s if last else None,
        "config": dict(config),
        "wall_s": wall_s,
        "timing": {
            "train_s": sum(r.train_s for r in records),
            "eval_s": sum(r.eval_s for r in records),
            "mean_round_s": sum(r.wall_s for r in records) / len(records) if records else 0.0,
        },
    }


def without_timing(data: Mapping[str, Any]) -> dict[str, Any]:
    """A record or summary minus its wall-clock fields: what must match between same-seed runs."""
    return {k: v for k, v in data.items() if k not in TIMING_KEYS}


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """One JSON object per line, keys sorted, like rounds.jsonl."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
