"""A run's files: rounds.jsonl as the rounds finish, then summary.json and any personalization.jsonl."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from fedcore.backends.user import EvalFn, ModelFn, TrainFn, UserModel
from fedcore.config import FLConfig
from fedcore.data import FederatedData
from fedcore.records import RoundRecord, RoundsWriter, summarize, write_jsonl, write_summary
from fedcore.sim.engine import SimResult, simulate, user_model
from fedcore.sim.profile import SimProfile
from fedcore.sim.workers import build_model, load_data


def simulate_to_dir(
    config: FLConfig,
    on_round: Callable[[RoundRecord], None] | None = None,
    data: FederatedData | None = None,
    model_fn: ModelFn | None = None,
    train_fn: TrainFn | None = None,
    eval_fn: EvalFn | None = None,
    profile: SimProfile | None = None,
) -> SimResult:
    """Simulate into `config.out`; rounds are on disk as they finish, so a killed run keeps its history.

    summary.json says `"status": "complete"`; on Ctrl-C it is still written, for the complete rounds, with
    `"status": "interrupted"`, and the KeyboardInterrupt goes on to the caller. `model_fn`, `train_fn`
    and `eval_fn` are `simulate`'s.
    """
    out = Path(config.out)
    start = time.perf_counter()
    data = data if data is not None else load_data(config)
    done: list[RoundRecord] = []
    with RoundsWriter(out / "rounds.jsonl") as writer:

        def record(round_record: RoundRecord) -> None:
            writer.write(round_record)
            done.append(round_record)
            if on_round is not None:
                on_round(round_record)

        try:
            if profile is None:
                result = simulate(config, record, data, model_fn, train_fn, eval_fn)
            else:
                result = simulate(config, record, data, model_fn, train_fn, eval_fn, profile)
        except KeyboardInterrupt:
            user = user_model(config, model_fn, train_fn, eval_fn)
            write_summary(out / "summary.json", _interrupted_summary(config, data, user, done, start))
            raise
    with profile.phase("output files") if profile is not None else nullcontext():
        if result.personalization is not None:
            scores = [s.to_dict() for s in result.personalization.scores]
            write_jsonl(out / "personalization.jsonl", scores)
        write_summary(out / "summary.json", {**result.summary, "status": "complete"})
    return result


def _interrupted_summary(
    config: FLConfig, data: FederatedData, user: UserModel | None, done: list[RoundRecord], start: float
) -> dict[str, object]:
    """The summary of the rounds that finished, as a complete run of that length would have it."""
    size = build_model(config, data, user).layout.size
    vectors = 2 if config.make_strategy().uses_control else 1
    summary = summarize(done, size, config.run_settings(), time.perf_counter() - start, vectors)
    return {**summary, "status": "interrupted"}
