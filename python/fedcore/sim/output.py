"""A run's files: rounds.jsonl as the rounds finish, then summary.json and any personalization.jsonl."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fedcore.config import FLConfig
from fedcore.records import RoundRecord, RoundsWriter, write_jsonl, write_summary
from fedcore.sim.engine import SimResult, simulate


def simulate_to_dir(config: FLConfig, on_round: Callable[[RoundRecord], None] | None = None) -> SimResult:
    """Simulate into `config.out`; rounds are on disk as they finish, so a killed run keeps its history."""
    out = Path(config.out)
    with RoundsWriter(out / "rounds.jsonl") as writer:

        def record(round_record: RoundRecord) -> None:
            writer.write(round_record)
            if on_round is not None:
                on_round(round_record)

        result = simulate(config, record)
    if result.personalization is not None:
        write_jsonl(out / "personalization.jsonl", [s.to_dict() for s in result.personalization.scores])
    write_summary(out / "summary.json", result.summary)
    return result
