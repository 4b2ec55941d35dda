"""`fedcore sim` writes rounds.jsonl, summary.json (and personalization.jsonl); `fedcore report DIR` plots."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from fedcore.backends.user import DEVICES, check_device, import_model_fn, is_import_path
from fedcore.compression import CodecUnavailableError
from fedcore.config import BACKENDS, ENGINES, MODELS, FLConfig, load_config
from fedcore.config_files import to_toml
from fedcore.data import FederatedData
from fedcore.errors import (
    USAGE_EXIT,
    UsageError,
    check_backend_installed,
    did_you_mean,
    name_flags,
    one_line,
    suggest_choice,
)
from fedcore.help_text import epilog, with_default
from fedcore.output_dir import check_out, cleaned_on_failure
from fedcore.records import RoundRecord
from fedcore.selection import SELECTION_NAMES, InsufficientClientsError
from fedcore.sim.profile import SimProfile, child_profile, run_profiled
from fedcore.sim.workers import WorkerError, prestart_workers
from fedcore.transport.grpc.cli import (
    add_client_arguments,
    add_deploy_local_arguments,
    add_server_arguments,
    fl_overrides,
    run_client,
    run_deploy_local,
    run_server,
)

# Flags whose value is passed on to FLConfig under the same name (dashes become underscores).
_SIM_FLAGS: tuple[tuple[str, type, str], ...] = (
    (
        "--dataset",
        str,
        "digits | mnist1d | synthetic:ALPHA,BETA (also mnist1d:SAMPLES, npz:FILE, leaf:PATH, and npz:FOLDER: "
        "one .npz per client, test.npz the server's test set)",
    ),
    ("--clients", int, "number of clients N"),
    ("--per-round", int, "clients sampled per round K"),
    ("--rounds", int, "communication rounds R (with --async: FedBuff server updates)"),
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
    ("--adaptive-ladder", str, "codec specs for --adaptive, best first, comma-separated (default: 8 rungs)"),
    (
        "--aggregator",
        str,
        "mean (streaming weighted fold) or a robust rule over every update: median | trimmed:BETA | "
        "krum:F | multikrum:F,M | bulyan:F | geomed | cclip:TAU | normbound:C, optionally after "
        "bucket:S+ or nnm:F+",
    ),
    (
        "--attack",
        str,
        "simulated Byzantine clients: signflip | gauss[:SIGMA] | alie | ipm[:EPS] | minmax | minsum | "
        "labelflip | backdoor:TARGET[,BOOST]",
    ),
    ("--byzantine", float, "share of the population that attacks (with --attack)"),
    ("--secagg-bits", int, "secure aggregation: bits per quantized coordinate"),
    ("--secagg-clip", float, "secure aggregation: clip each weighted coordinate to [-CLIP, CLIP]"),
    ("--secagg-neighbors", int, "secure aggregation: SecAgg+ neighbours k (default: chosen per round)"),
    ("--secagg-threshold", int, "secure aggregation: Shamir threshold t (default: chosen with k)"),
    (
        "--dp",
        str,
        "differential privacy: central:CLIP | adaptive:QUANTILE (user-level DP-FedAvg) | "
        "local:CLIP,Z (example-level DP-SGD on each client) | "
        "distributed:CLIP (with --secagg: each client adds its Skellam noise share in the ring)",
    ),
    ("--noise-multiplier", float, "central/distributed DP: noise std on the sum, in units of the clip"),
    ("--target-epsilon", float, "central/distributed DP: calibrate the noise so the run spends this epsilon"),
    ("--delta", float, "DP delta (default: 0.1 / clients, or 0.1 / a client's examples for local DP)"),
    ("--max-epsilon", float, "stop at the last round whose epsilon fits this budget"),
    ("--dropout", float, "probability that a selected client never answers"),
    (
        "--stragglers",
        float,
        "share of clients that run a random 1..E local epochs (system heterogeneity); with --speed-spread: "
        "share of devices that are slow",
    ),
    ("--min-clients", int, "fail a round with fewer answering clients than this"),
    ("--workers", int, "worker processes (default: chosen from the job; 0 or 1: in-process)"),
    ("--seed", int, "run seed; same seed, same numbers"),
    ("--out", str, "output directory for rounds.jsonl and summary.json"),
    (
        "--shift",
        str,
        "shifted compression: clients send C(update - shift) and learn the shift, the server adds the "
        "mean shift back: diana:ALPHA | ef21",
    ),
    ("--ef-decay", float, "with --error-feedback: share of the residual kept per round the client sat out"),
    # --- async (FedBuff) and device speeds (issue 14, FedBuff part) ---
    ("--buffer", int, "with --async: FedBuff's K, client updates per server step (default: --per-round)"),
    (
        "--concurrency",
        int,
        "with --async: clients training at once, between --buffer and --clients "
        "(default: min(clients, 2 x buffer))",
    ),
    (
        "--staleness",
        str,
        "with --async: weight of an update s model versions old: constant | poly:A (1/(1+s)^A) | "
        "hinge:A,B (1 up to s = B, then 1/(A(s-B)+1))",
    ),
    (
        "--speed-spread",
        float,
        "device speeds for the virtual clock: the slowest device is this many times slower than the "
        "fastest; --stragglers F then means a share F of devices is the slow ones (all train every "
        "epoch) instead of FedProx's fewer epochs (default: the seeded lognormal speeds)",
    ),
    # --- end async ---
)


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line UsageError (with a did-you-mean) instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments:"):
            typed = next((w for w in message.split()[2:] if w.startswith("--")), None)
            hint = did_you_mean(typed, self.option_strings()) if typed is not None else ""
        raise UsageError(f"{self.prog}: {message}{hint}")

    def option_strings(self) -> list[str]:
        """Every flag of this parser and its subcommands (argparse reports a typo at the top level)."""
        found: list[str] = []
        for action in self._actions:
            found += action.option_strings
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if isinstance(sub, _Parser):
                        found += sub.option_strings()
        return found


def _version() -> str:
    from fedcore import __version__

    return f"fedcore {__version__}"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedcore", description="Federated learning that sends fewer bytes.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser(
        "sim",
        help="run a federated simulation",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_flags(sim)
    _add_engine_flags(sim)
    sim.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --out (default: refuse)"
    )
    sim.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    sim.add_argument(
        "--profile",
        action="store_true",
        help="after the run, print where start-up and round time went (imports by package, data load, "
        "model build, worker start, first round; train/encode/aggregate/evaluate per round)",
    )
    server = sub.add_parser(
        "server",
        help="serve the same rounds as `fedcore sim` to real clients over gRPC",
        epilog="Example: fedcore server --make-tokens 20 --token-dir tokens, then fedcore server "
        "--clients 20 --per-round 5 --token-file tokens/tokens.json --out runs/srv",
    )
    _add_run_flags(server)
    add_server_arguments(server)
    client = sub.add_parser("client", help="one client process: train locally, talk to `fedcore server`")
    add_client_arguments(client)
    deploy = sub.add_parser(
        "deploy-local", help="a server and one client process per client on this machine (loopback)"
    )
    _add_run_flags(deploy)
    add_deploy_local_arguments(deploy)
    _add_sweep_parser(sub)
    report = sub.add_parser("report", help="plot accuracy and bytes per round of a finished run")
    report.add_argument("run_dir", type=Path, help="directory holding rounds.jsonl")
    return parser


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The run configuration flags `fedcore sim`, `server` and `deploy-local` share (config keys)."""
    parser.add_argument("--config", type=Path, help="TOML or YAML file with config keys; flags override it")
    for flag, kind, text in _SIM_FLAGS:
        parser.add_argument(flag, type=kind, help=with_default(text, flag[2:].replace("-", "_")))
    parser.add_argument(
        "--adaptive",
        dest="adaptive_deadline_s",
        type=float,
        metavar="DEADLINE_S",
        help="per client and round, the best --adaptive-ladder codec whose upload over the simulated "
        "bandwidth ends within DEADLINE_S seconds of the round start; replaces --codec",
    )
    parser.add_argument("--backend", choices=BACKENDS, help=with_default("training backend", "backend"))
    parser.add_argument(
        "--model",
        help=with_default(
            f"model architecture: {' | '.join(MODELS)}, or MODULE:FUNCTION, an import path to a function "
            "that returns your own torch/mlx module or scikit-learn estimator",
            "model",
        ),
    )
    parser.add_argument("--device", choices=DEVICES, help=with_default("where torch models train", "device"))
    parser.add_argument(
        "--selection", choices=SELECTION_NAMES, help=with_default("client selection", "selection")
    )
    parser.add_argument(
        "--error-feedback",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=with_default("keep a per-client error-feedback residual for the uplink codec", "error_feedback"),
    )
    parser.add_argument(
        "--local-head",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="FedRep in rounds: each client keeps its own output layer and uploads only the body; "
        "--personalize fedrep:HEAD_EPOCHS,BODY_EPOCHS sets the epochs (default: --local-epochs each)",
    )
    parser.add_argument(
        "--ditto-rounds",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --personalize ditto:LAMBDA, every selected client also trains its personal model "
        "in each round it takes part (instead of once after the last round)",
    )
    parser.add_argument(
        "--secagg",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sum every round through SecAgg+ (X25519 pairwise masks, Shamir dropout recovery): the server "
        "learns only the sum; composes with --codec randk:F",
    )
    parser.add_argument(  # async (FedBuff)
        "--async",
        dest="asynchronous",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="FedBuff: no rounds; the server steps whenever --buffer updates arrived, each weighted by "
        "--staleness; --concurrency clients train at once on the virtual clock; --rounds counts server "
        "steps and --server-lr is FedBuff's server learning rate",
    )
    parser.add_argument(
        "--vectorize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train a round's clients as one batched model (default: wherever the model allows; "
        "--no-vectorize trains them one at a time)",
    )
    parser.add_argument(
        "--exclude-suspects",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="leave clients a robust aggregator flagged (mean suspicion score above 1 over their "
        "last 10 rounds) out of selection",
    )
    parser.add_argument(
        "--eval-clients",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=with_default(
            "also report the global model's mean accuracy on the clients' own test splits", "eval_clients"
        ),
    )
    # --- server memory (issue 18, MIFA-style variance reduction on the server) ---
    parser.add_argument(
        "--server-memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=with_default(
            "the server keeps every client's last decoded update and steps along their mean (MIFA): "
            "the codec noise of all remembered frames instead of one round's",
            "server_memory",
        ),
    )
    parser.add_argument(
        "--server-memory-age",
        type=int,
        metavar="ROUNDS",
        help="with --server-memory: forget an update after this many rounds (default: keep it)",
    )
    parser.add_argument(
        "--server-shrink",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=with_default(
            "the server scales the round's mean by its estimated signal share, 1 - variance / energy, "
            "measured from the clients' decoded updates (James-Stein)",
            "server_shrink",
        ),
    )


def _add_sweep_parser(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep", help="run the accuracy-per-byte study (or your own plan) and write results.md + a PNG"
    )
    sweep.add_argument("--plan", type=Path, help="TOML sweep plan (default: the built-in study)")
    sweep.add_argument("--out", type=Path, default=Path("runs/sweep"), help="folder for runs and results")
    sweep.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="simulations at a time")
    sweep.add_argument("--seeds", type=_int_list, help="comma-separated seeds, replacing the plan's")
    sweep.add_argument("--datasets", type=_str_list, help="comma-separated subset of the plan's datasets")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and exit")


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


# --- simulation engine (issue 14: Ray) ---
def _add_engine_flags(sim: argparse.ArgumentParser) -> None:
    """Where `fedcore sim` trains its clients: worker processes here, or Ray actors (same numbers)."""
    sim.add_argument(
        "--engine",
        choices=ENGINES,
        help=with_default(
            "process: worker processes on this machine; ray: Ray actors on a local Ray or a cluster "
            "(the same --workers gives the same numbers; without --workers, one actor per cluster CPU)",
            "engine",
        ),
    )
    sim.add_argument(
        "--ray-address",
        help="with --engine ray: auto (the cluster `ray start` made) | HOST:PORT | ray://HOST:PORT "
        "(default: start a local Ray)",
    )


def _check_engine_installed(config: FLConfig) -> None:
    """--engine ray without Ray installed is bad input, said before anything starts."""
    if config.engine == "ray" and importlib.util.find_spec("ray") is None:
        from fedcore.sim.workers import RAY_MISSING

        raise UsageError(RAY_MISSING)


# --- end of the simulation engine block ---


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"command", "config", "overwrite", "print_config", "profile"}
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
        "diverged_updates",
        "unavailable",
        "wall_s",
    ):
        table.add_row(key, fmt(summary[key]))
    picks = summary.get("adaptive_codecs")
    if picks is not None:
        table.add_row("adaptive codecs", ", ".join(f"{spec} x{count}" for spec, count in picks.items()))
        table.add_row("late uploads", fmt(summary["late_uploads"]))
    if summary.get("final_personal_accuracy") is not None:
        table.add_row("final_personal_accuracy", fmt(summary["final_personal_accuracy"]))
    personal = summary.get("personalization")
    if personal is not None:
        for key in ("mean_before", "mean_after", "worst_decile_before", "worst_decile_after"):
            table.add_row(f"{personal['method']} {key}", fmt(personal[key]))
    return table


def run_sim(
    config: FLConfig,
    console: Console,
    data: FederatedData | None = None,
    profile: SimProfile | None = None,
) -> dict[str, Any]:
    """Simulate into config.out (see `simulate_to_dir`) and print the summary table."""
    from fedcore.sim import simulate_to_dir

    with _progress(console, config.rounds) as advance:
        result = simulate_to_dir(config, advance, data, profile=profile)
    console.print(_summary_table(result.summary, Path(config.out)))
    if result.summary.get("stopped_by_budget"):
        console.print(f"[yellow]{result.summary['stopped_by_budget']}[/yellow]")
    return result.summary


def run_sweep_command(
    args: argparse.Namespace, console: Console, err: Console, argv: Sequence[str] | None
) -> int:
    """Plan, run what is not on disk yet, then write results.md, results.json and accuracy_vs_bytes.png."""
    from fedcore.sweep import builtin_plan, collect_cells, load_plan, run_sweep
    from fedcore.sweep.document import write_results
    from fedcore.sweep.plan import RunSpec
    from fedcore.sweep.plot import plot_accuracy_vs_bytes
    from fedcore.sweep.runner import SweepRunError

    try:
        plan = load_plan(args.plan) if args.plan is not None else builtin_plan()
        if args.seeds is not None:
            plan = plan.with_seeds(args.seeds)
        if args.datasets is not None:
            plan = plan.with_datasets(args.datasets)
        specs = plan.runs(args.out / "runs")
    except (OSError, ValueError, CodecUnavailableError) as exc:
        _say(f"invalid sweep: {exc}")
        return 2
    if args.dry_run:
        for spec in specs:
            console.print(f"{spec.run_dir}  {spec.setting.overrides}")
        console.print(f"{len(specs)} runs")
        return 0
    total = len(specs)
    done = 0

    def report(spec: RunSpec, summary: dict[str, Any], reused: bool) -> None:
        nonlocal done
        done += 1
        how = "on disk" if reused else f"{summary['wall_s']:.0f} s"
        console.print(
            f"[{done}/{total}] {spec.dataset} {spec.partition} {spec.setting.name} seed {spec.seed}: "
            f"accuracy {summary['final_accuracy']:.4f}, {summary['uplink_ratio']:.1f}x less uplink ({how})"
        )

    try:
        summaries = run_sweep(specs, args.jobs, report)
    except (SweepRunError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    cells = collect_cells(plan, specs, summaries)
    for cell in cells:
        twin = cell.twin_interval
        console.print(
            f"{cell.dataset} {cell.partition} {cell.setting}: accuracy "
            f"{cell.accuracy_interval.scaled(100.0).text()} %, "
            f"{cell.delta_interval.text(signed=True)} points vs {plan.baseline}"
            + (f", {twin.text(signed=True)} vs {cell.twin}" if twin is not None else "")
            + " (95 % CI over seeds, paired)"
        )
    png = plot_accuracy_vs_bytes(cells, args.out / "accuracy_vs_bytes.png")
    command = "fedcore " + " ".join(argv if argv is not None else sys.argv[1:])
    console.print(f"wrote {write_results(plan, cells, args.out, command, png)} and {png}")
    return 0


_FIELDS = tuple(f.name for f in dataclasses.fields(FLConfig))


def _say(message: object) -> None:
    """One plain line on stderr (no rich markup: messages hold brackets such as fedrep[:H[,B]])."""
    print(f"fedcore: error: {suggest_choice(one_line(name_flags(str(message), _FIELDS)))}", file=sys.stderr)


def _check_model(config: FLConfig) -> None:
    """Your --model imports, or the built-in model's backend is installed; the --device exists."""
    if is_import_path(config.model):
        try:
            import_model_fn(config.model)
        except ValueError as exc:
            raise UsageError(f"--model {config.model}: {exc}") from None
    else:
        check_backend_installed(config.backend)
    try:
        check_device(config.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _preflight(config: FLConfig, overwrite: bool) -> FederatedData:
    """Everything that can be wrong with the user's input, checked before a folder or a worker is made."""
    from fedcore.sim.workers import load_data

    _check_model(config)
    _check_engine_installed(config)
    check_out(Path(config.out), overwrite)
    try:
        return load_data(config)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--dataset {config.dataset}: {exc}") from None


def run_sim_command(args: argparse.Namespace, console: Console, profile: SimProfile | None = None) -> int:
    """Resolve the config, check the inputs, run; exit 2 for bad input, 1 for a failed run, 130 on Ctrl-C."""
    config = load_config(args.config, _overrides(args))
    if args.print_config:
        print(to_toml(config.to_dict(), "fedcore sim config (use it with --config FILE)"), end="")
        return 0
    with profile.phase("checks and data load") if profile is not None else nullcontext():
        prestart_workers(config)  # the worker processes' imports overlap the data load
        data = _preflight(config, args.overwrite)
    out = Path(config.out)
    try:
        with cleaned_on_failure(out):
            run_sim(config, console, data, profile)
    except KeyboardInterrupt:
        print(
            f"fedcore: interrupted; {out / 'summary.json'} has the {_rounds_done(out)} complete round(s)",
            file=sys.stderr,
        )
        return 130
    except (InsufficientClientsError, CodecUnavailableError, WorkerError) as exc:
        _say(exc)
        return 1
    return 0


def _rounds_done(out: Path) -> int:
    rounds = out / "rounds.jsonl"
    return len(rounds.read_text(encoding="utf-8").splitlines()) if rounds.is_file() else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`fedcore ...`: bad input is one line on stderr and exit code 2, never a traceback."""
    try:
        return _main(argv)
    except UsageError as exc:
        _say(exc)
        return USAGE_EXIT
    except KeyboardInterrupt:
        print("fedcore: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    console = Console(soft_wrap=True)  # piped output keeps each line whole
    err = Console(stderr=True, soft_wrap=True)
    if args.command == "report":
        from fedcore.report import write_report

        try:
            path = write_report(args.run_dir)
        except (FileNotFoundError, ValueError) as exc:
            _say(exc)
            return 2
        console.print(f"wrote {path}")
        return 0
    if args.command == "sweep":
        return run_sweep_command(args, console, err, argv)
    if args.command == "client":
        return run_client(args)
    if args.command == "deploy-local":
        return run_deploy_local(args)
    if args.command == "server":
        config = load_config(args.config, fl_overrides(args))
        _check_model(config)
        return run_server(args, config)
    profiled = child_profile() if args.profile else None
    if args.profile and profiled is None:  # rerun in a fresh interpreter under the import timer
        return run_profiled(list(argv) if argv is not None else sys.argv[1:])
    try:
        code = run_sim_command(args, console, profiled[0] if profiled is not None else None)
    except (OSError, ValueError, CodecUnavailableError) as exc:
        raise UsageError(str(exc)) from None
    if profiled is not None:
        profile, path = profiled
        path.write_text(json.dumps(profile.to_dict()), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
