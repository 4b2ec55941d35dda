"""`fedcore sim` writes rounds.jsonl, summary.json (and personalization.jsonl); `fedcore report DIR` plots."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from fedcore.compression import CodecUnavailableError
from fedcore.config import BACKENDS, MODELS, FLConfig, load_config
from fedcore.records import RoundRecord, RoundsWriter, write_jsonl, write_summary
from fedcore.selection import SELECTION_NAMES, InsufficientClientsError
from fedcore.sim.workers import WorkerError

# Flags whose value is passed on to FLConfig under the same name (dashes become underscores).
_SIM_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("--dataset", str, "digits | mnist1d | synthetic:ALPHA,BETA (also mnist1d:SAMPLES, npz:PATH, leaf:PATH)"),
    ("--clients", int, "number of clients N"),
    ("--per-round", int, "clients sampled per round K"),
    ("--rounds", int, "communication rounds R"),
    ("--local-epochs", int, "local epochs per round E"),
    ("--lr", float, "client learning rate"),
    ("--batch-size", int, "client batch size"),
    ("--momentum", float, "client SGD momentum"),
    ("--partition", str, "iid | dirichlet:ALPHA | shards:S"),
    (
        "--strategy",
        str,
        "fedavg | fedprox:MU | fednova | fedavgm | fedadam | fedyogi | fedadagrad | scaffold",
    ),
    ("--server-lr", float, "server learning rate (default: the strategy's own)"),
    ("--codec", str, "uplink codec spec, e.g. topk:0.01+quant:8 (default: raw float32)"),
    (
        "--downlink-codec",
        str,
        "codec for the downlink: each client gets the encoded difference to the model it holds "
        "(default: raw float32 weights)",
    ),
    ("--partial", str, "upload a masked share of each update: random:F | topk:F | gradient:F | structured:F"),
    (
        "--personalize",
        str,
        "after the last round, personalize every client and score it on its own test split: "
        "finetune:EPOCHS | fedrep[:HEAD_EPOCHS[,BODY_EPOCHS]] | ditto:LAMBDA",
    ),
    ("--powersgd", int, "PowerSGD rank for the uplink (warm start, error feedback); replaces --codec"),
    ("--dropout", float, "probability that a selected client never answers"),
    ("--stragglers", float, "share of clients that run a random 1..E local epochs (system heterogeneity)"),
    ("--min-clients", int, "fail a round with fewer answering clients than this"),
    ("--workers", int, "worker processes (default: one per core; 0 or 1: in-process)"),
    ("--seed", int, "run seed; same seed, same numbers"),
    ("--out", str, "output directory for rounds.jsonl and summary.json"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedcore", description="Federated learning that sends fewer bytes.")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("sim", help="run a federated simulation")
    sim.add_argument("--config", type=Path, help="TOML file with FLConfig fields; flags override it")
    for flag, kind, text in _SIM_FLAGS:
        sim.add_argument(flag, type=kind, help=text)
    sim.add_argument("--backend", choices=BACKENDS, help="training backend")
    sim.add_argument("--model", choices=MODELS, help="model architecture")
    sim.add_argument("--selection", choices=SELECTION_NAMES, help="client selection")
    sim.add_argument(
        "--error-feedback",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep a per-client error-feedback residual for the uplink codec",
    )
    sim.add_argument(
        "--eval-clients",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also report the global model's mean accuracy on the clients' own test splits",
    )
    report = sub.add_parser("report", help="plot accuracy and bytes per round of a finished run")
    report.add_argument("run_dir", type=Path, help="directory holding rounds.jsonl")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"command", "config"}
    return {k: v for k, v in vars(args).items() if k not in skip and v is not None}


@contextmanager
def _progress(console: Console, rounds: int) -> Iterator[Callable[[RoundRecord], None]]:
    """A live bar on a terminal; a quiet no-op when output is piped."""
    if not console.is_terminal:
        yield lambda record: None
        return
    columns = (
        TextColumn("round"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sim", total=rounds, acc="")

        def advance(record: RoundRecord) -> None:
            progress.update(task, advance=1, acc=f"acc {record.accuracy:.3f}")

        yield advance


def _summary_table(summary: dict[str, Any], out: Path) -> Table:
    table = Table(title=f"fedcore sim → {out}")
    table.add_column("metric")
    table.add_column("value", justify="right")

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "—" if value is None else str(value)

    for key in (
        "rounds",
        "final_accuracy",
        "best_accuracy",
        "final_loss",
        "uplink_bytes",
        "downlink_bytes",
        "uplink_ratio",
        "dropouts",
        "unavailable",
        "wall_s",
    ):
        table.add_row(key, fmt(summary[key]))
    personal = summary.get("personalization")
    if personal is not None:
        for key in ("mean_before", "mean_after", "worst_decile_before", "worst_decile_after"):
            table.add_row(f"{personal['method']} {key}", fmt(personal[key]))
    return table


def run_sim(config: FLConfig, console: Console) -> dict[str, Any]:
    """Stream rounds to OUT/rounds.jsonl, then write OUT/summary.json and any per-client personalization."""
    from fedcore.sim import simulate

    out = Path(config.out)
    with RoundsWriter(out / "rounds.jsonl") as writer, _progress(console, config.rounds) as advance:

        def on_round(record: RoundRecord) -> None:
            writer.write(record)
            advance(record)

        result = simulate(config, on_round)
    write_summary(out / "summary.json", result.summary)
    if result.personalization is not None:
        write_jsonl(out / "personalization.jsonl", [s.to_dict() for s in result.personalization.scores])
    console.print(_summary_table(result.summary, out))
    return result.summary


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    err = Console(stderr=True)
    if args.command == "report":
        from fedcore.report import write_report

        try:
            path = write_report(args.run_dir)
        except (FileNotFoundError, ValueError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 2
        console.print(f"wrote {path}")
        return 0
    try:
        config = load_config(args.config, _overrides(args))
    except (OSError, ValueError, CodecUnavailableError) as exc:
        err.print(f"[red]invalid configuration:[/red] {exc}")
        return 2
    try:
        run_sim(config, console)
    except (InsufficientClientsError, CodecUnavailableError, WorkerError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
