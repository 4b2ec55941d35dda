"""`fedcore server`, `fedcore client` and `fedcore deploy-local`: flags and what each command runs.

fedcore's own CLI adds the run-configuration flags (the same as `fedcore sim`) and calls these; every
flag added here has a dest that is no FLConfig field, so `fl_overrides` tells the two apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedcore.transport.grpc.auth import HASHES_FILE, TokenBook, client_token_file, make_tokens, read_token
from fedcore.transport.grpc.limits import Limits

if TYPE_CHECKING:
    from fedcore.config import FLConfig
    from fedcore.data.dataset import Dataset
    from fedcore.protocol.messages import Failure, Reply, Task
    from fedcore.protocol.transport import Transport
    from fedcore.server.run import Evaluation
    from fedcore.transport.grpc.client import Handler, Handlers
    from fedcore.transport.grpc.server import GrpcServerTransport

log = logging.getLogger("fedcore.transport.grpc")


class ClientSetupError(RuntimeError):
    """This client cannot train under the announced configuration (unknown fields, its data, the dataset)."""


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Where to listen, who may connect (tokens, TLS), and how long to wait for clients and replies."""
    parser.add_argument(
        "--address", default="0.0.0.0:8080", help="HOST:PORT to listen on (port 0: any free one)"
    )
    parser.add_argument(
        "--token-file", type=Path, help=f"client id -> sha256(token) table (JSON/TOML, e.g. {HASHES_FILE})"
    )
    parser.add_argument(
        "--make-tokens",
        type=int,
        metavar="N",
        help="write fresh tokens for clients 0..N-1 into --token-dir (client-I.token and the server's "
        f"{HASHES_FILE}) and exit",
    )
    parser.add_argument("--token-dir", type=Path, help="folder --make-tokens writes into")
    _add_listen_tuning(parser)
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain the server presents")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Which server, which client this process is, its token, and its data."""
    parser.add_argument("--server", required=True, help="HOST:PORT of `fedcore server`")
    parser.add_argument("--token-file", type=Path, required=True, help="file holding this client's token")
    parser.add_argument("--client-id", type=int, required=True, help="this client's id I")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--data", help="this client's own training data: npz:PATH (arrays x and y)")
    data.add_argument(
        "--dataset",
        dest="client_dataset",
        help="a built-in dataset, which must be the server's: train on shard I of the partition the "
        "server announces (default when --data is not given)",
    )
    parser.add_argument(
        "--model",
        dest="client_model",
        metavar="MODULE:FUNCTION",
        help="your own model, which must be the server's --model: imported here before connecting",
    )
    parser.add_argument(
        "--device",
        dest="client_device",
        choices=("cpu", "cuda", "mps"),
        help="where this client trains a torch model (default: the server's --device)",
    )
    parser.add_argument(
        "--tls-ca", type=Path, help="PEM certificate(s) to trust for the server (enables TLS)"
    )
    parser.add_argument(
        "--tls-server-name", help="name to expect in the server's certificate (default: host)"
    )
    parser.add_argument(
        "--give-up-s", type=float, default=120.0, help="stop after the server was unreachable this long"
    )
    parser.add_argument(  # async (FedBuff): a slow device on a fast machine
        "--delay",
        type=float,
        default=0.0,
        metavar="S",
        help="wait S seconds after training each task before replying (a slower device, for testing)",
    )


def add_deploy_local_arguments(parser: argparse.ArgumentParser) -> None:
    """A server and one process per client on this machine's loopback, with tokens in the out folder."""
    _add_listen_tuning(parser)
    parser.add_argument(  # async (FedBuff)
        "--client-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="client I waits S x I / (clients - 1) seconds after each task: differing speeds on one machine",
    )


def _add_listen_tuning(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--round-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="a round's deadline; later clients drop",
    )
    parser.add_argument(
        "--stage-timeout",
        type=float,
        metavar="S",
        help="--secagg: each SecAgg+ stage's deadline; later clients drop (default: --round-timeout)",
    )
    parser.add_argument(
        "--wait-clients-s", type=float, default=300.0, help="how long to wait for clients before round 1"
    )
    parser.add_argument(
        "--poll-s", type=float, default=5.0, help="how long a client's poll for a task is held"
    )


def fl_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags that are FLConfig fields (the rest belong to the transport)."""
    from fedcore.config import FLConfig

    names = {f.name for f in dataclasses.fields(FLConfig)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def simulation_only(config: FLConfig) -> str | None:
    """What a deployment cannot do, said instead of silently doing something else."""
    if config.attack is not None:
        return "--attack simulates Byzantine clients; it exists in `fedcore sim` only"
    if config.adaptive_deadline_s is not None:
        return "--adaptive plans with simulated bandwidth and device speed; it exists in `fedcore sim` only"
    if config.engine != "process":
        return "--engine chooses where simulated clients train; it exists in `fedcore sim` only"
    if config.speed_spread is not None:
        return (
            "--speed-spread sets the simulated clock; real clients run at their own speed "
            "(deploy-local --client-delay S slows them down one by one)"
        )
    return None


# ---- fedcore server --------------------------------------------------------------------------------


def run_server(args: argparse.Namespace, config: FLConfig) -> int:
    """Serve the run to the clients that register; 0 when all rounds ran, 1 on failure, 2 on bad flags."""
    refusal = simulation_only(config)
    if refusal is not None:
        return _usage(refusal)
    if args.make_tokens is not None:
        if args.token_dir is None:
            return _usage("--make-tokens needs --token-dir")
        make_tokens(args.make_tokens, args.token_dir)
        print(f"wrote {args.make_tokens} client tokens and {args.token_dir / HASHES_FILE}")
        return 0
    if args.token_file is None:
        return _usage("--token-file is required (make one with --make-tokens N --token-dir D)")
    if (args.tls_cert is None) != (args.tls_key is None):
        return _usage("--tls-cert and --tls-key go together")
    if config.asynchronous and args.resume:
        return _usage("--resume continues a checkpointed round; a FedBuff (--async) run has none")
    try:
        tokens = TokenBook.load(args.token_file)
        tls = _server_tls(args.tls_cert, args.tls_key)
    except (OSError, ValueError) as exc:
        return _usage(str(exc))
    _log_to_stderr()
    from fedcore.server.run import Evaluation

    evaluation = Evaluation.load(config)
    transport = open_server(config, evaluation, tokens, args.address, args, tls)
    print(f"fedcore server listening on port {transport.port}", flush=True)
    try:
        summary = serve(config, evaluation, transport, args)
    finally:
        transport.close(grace_s=args.poll_s + 60.0)  # a busy client polls late; close waits for no one else
    print(json.dumps(summary, default=str))
    return 0


def open_server(
    config: FLConfig,
    evaluation: Evaluation,
    tokens: TokenBook,
    address: str,
    args: argparse.Namespace,
    tls: Any = None,
) -> GrpcServerTransport:
    """A listening transport whose size limits follow from this run's model and codec."""
    from fedcore.transport.grpc.server import GrpcServerTransport

    return GrpcServerTransport(
        address,
        tokens,
        Limits.for_model(evaluation.model.layout.size, config.codec),
        json.dumps(config.to_dict()),
        tls=tls,
        round_timeout_s=args.round_timeout,
        poll_s=args.poll_s,
        max_clients=config.clients,
        secure=config.secagg,
        stage_timeout_s=getattr(args, "stage_timeout", None),
    )


def serve(
    config: FLConfig, evaluation: Evaluation, transport: GrpcServerTransport, args: argparse.Namespace
) -> dict[str, Any]:
    """The lead's round driver over this transport: rounds.jsonl, summary.json, audit.jsonl, checkpoints."""
    from fedcore.server import run_federation

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.asynchronous:
        return serve_fedbuff(config, evaluation, transport, args)
    if not _finished(config, out, bool(getattr(args, "resume", False))):
        ready = transport.wait_ready(config.clients, args.wait_clients_s)  # everyone, within the bound
        log.info("%d of %d clients registered; starting round 1", ready, config.clients)
    summary: dict[str, Any] = run_federation(
        config,
        secure_transport(config, evaluation, transport) if config.secagg else transport,
        out,
        resume=bool(getattr(args, "resume", False)),
        deadline_s=args.round_timeout,
        wait_clients_s=args.wait_clients_s,
        evaluation=evaluation,
    )
    refusals = [dataclasses.asdict(f) for f in transport.refusals()]
    (out / "refusals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refusals))
    return summary


def serve_fedbuff(
    config: FLConfig, evaluation: Evaluation, transport: GrpcServerTransport, args: argparse.Namespace
) -> dict[str, Any]:
    """FedBuff over gRPC: tasks to polling clients while fewer than --concurrency train; rounds.jsonl."""
    from fedcore.server.run import run_fedbuff_federation

    out = Path(config.out)
    ready = transport.wait_ready(config.async_concurrency, args.wait_clients_s)
    log.info("%d clients registered; FedBuff starts (%d training at once)", ready, config.async_concurrency)
    summary = run_fedbuff_federation(config, transport, out, evaluation=evaluation)
    refusals = [dataclasses.asdict(f) for f in transport.refusals()]
    (out / "refusals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refusals))
    return summary


def secure_transport(config: FLConfig, evaluation: Evaluation, transport: GrpcServerTransport) -> Transport:
    """Secure aggregation over gRPC: the client processes hold their updates and answer the SecAgg+ stages.

    The weight cap (the largest client's example count, public) comes from the run's partition, as in
    the simulation.
    """
    from fedcore.secure.round import SecureTransport
    from fedcore.sim.secure import secure_settings

    data = evaluation.data
    largest = max(len(data.client(c).train) for c in range(data.num_clients))
    size = evaluation.model.layout.size
    return SecureTransport(transport, secure_settings(config, largest, size))


def _finished(config: FLConfig, out: Path, resume: bool) -> bool:
    """A resumed run whose checkpoint already holds every round: no client needs to come back for it."""
    if not resume:
        return False
    from fedcore.server.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(out, config.run_settings()).next_round >= config.rounds
    except CheckpointError:
        return False  # run_federation says what is wrong with it


def _server_tls(cert: Path | None, key: Path | None) -> Any:
    if cert is None or key is None:
        return None
    from fedcore.transport.grpc.server import ServerTLS

    return ServerTLS(cert.read_bytes(), key.read_bytes())


# ---- fedcore client --------------------------------------------------------------------------------


def run_client(args: argparse.Namespace) -> int:
    """Answer the server's tasks as client --client-id; 0 when the run is done, 1 unreachable, 2 refused."""
    from fedcore.transport.grpc.client import (
        ClientRefusedError,
        FleetClient,
        RetryPolicy,
        ServerUnreachableError,
    )

    _log_to_stderr(f"client {args.client_id}")
    try:
        token = read_token(args.token_file)
        ca = args.tls_ca.read_bytes() if args.tls_ca is not None else None
    except (OSError, ValueError) as exc:
        return _usage(str(exc))
    if args.client_model is not None:
        from fedcore.backends.user import import_model_fn

        try:
            import_model_fn(args.client_model)
        except ValueError as exc:
            return _usage(f"--model {args.client_model}: {exc}")
    if args.delay < 0:
        return _usage(f"--delay must be >= 0, got {args.delay}")
    factory = client_handler_factory(
        args.client_id, args.data, args.client_dataset, args.client_model, args.client_device, args.delay
    )
    client = FleetClient(
        args.server,
        args.client_id,
        token,
        factory,
        tls_ca_pem=ca,
        tls_server_name=args.tls_server_name,
        retry=RetryPolicy(give_up_s=args.give_up_s),
    )
    try:
        run = client.run()
    except ClientRefusedError as exc:
        log.error("%s", exc)
        return 2
    except ServerUnreachableError as exc:
        log.error("%s", exc)
        return 1
    except ClientSetupError as exc:
        log.error("%s", exc)
        return 2
    log.info(
        "done: %d rounds answered, %d replies refused, %d reconnects",
        run.answered,
        run.refused,
        run.reconnects,
    )
    return 0


def client_handler_factory(
    client_id: int,
    data: str | None,
    dataset: str | None,
    model: str | None = None,
    device: str | None = None,
    delay_s: float = 0.0,
) -> Callable[[Mapping[str, Any]], Handler | Handlers]:
    """From the announced run config to `ClientApp(config, data_for).handle` on this client's data.

    `model` (the client's --model) must be the server's; `device` is this client's own choice. Under
    `--secagg` the client's `SecureParty` keeps each trained update in this process and answers the
    SecAgg+ stages; only the masked input leaves it.
    """

    def make(announced: Mapping[str, Any]) -> Handler | Handlers:
        from fedcore.client import ClientApp
        from fedcore.config import FLConfig

        try:
            config = FLConfig(**announced)
            if model is not None and model != config.model:
                raise ValueError(f"--model {model} differs from the server's model {config.model}")
            if device is not None:
                config = dataclasses.replace(config, device=device)
            data_for = _local_data(config, client_id, data, dataset)
        except (
            TypeError,
            ValueError,
            OSError,
        ) as exc:  # another fedcore version, a bad file, another dataset
            raise ClientSetupError(
                f"client {client_id} cannot run the server's configuration: {exc}"
            ) from exc
        if config.backend == "torch":  # one process per client: leave the other cores to the others
            from fedcore.sim.workers import limit_threads

            limit_threads(config)
        try:
            app = ClientApp(config, data_for)
        except ValueError as exc:  # the server's --model cannot be built here, or --device is absent
            raise ClientSetupError(f"client {client_id} cannot build the run's model: {exc}") from exc
        if delay_s > 0.0:  # async (FedBuff) tests: this device is slower than the machine it runs on

            def slow(task: Task) -> Reply | Failure:
                result = app.handle(task)
                time.sleep(delay_s)
                return result

            return slow
        if not config.secagg:
            return app.handle
        from fedcore.protocol.messages import Reply
        from fedcore.secure.party import SecureParty
        from fedcore.transport.grpc.client import Handlers

        party = SecureParty(client_id, secret=os.urandom(32))  # a noise share the server cannot rebuild

        def train_and_hold(task: Task) -> Reply | Failure:
            result = app.handle(task)
            return party.hold(result) if isinstance(result, Reply) else result

        return Handlers(train_and_hold, party.answer_bytes)

    return make


def _local_data(
    config: FLConfig, client_id: int, data: str | None, dataset: str | None
) -> Callable[[int], Dataset]:
    """This client's training set: its own npz file, or shard `client_id` of the server's partition."""
    from fedcore.data.spec import DatasetSpec

    if data is not None:
        from fedcore.data.loaders import load_npz

        kind, _, path = data.partition(":")
        if kind != "npz" or not path:
            raise ValueError(f"--data must be npz:PATH, got {data!r}")
        own = load_npz(path)
        return lambda _client: own
    if dataset is not None and DatasetSpec.parse(dataset) != config.dataset:
        raise ValueError(f"--dataset {dataset} differs from the server's dataset {config.dataset}")
    from fedcore.sim.workers import load_data  # the server's partition, as the simulation builds it

    shard = load_data(config).client(client_id).train
    return lambda _client: shard


# ---- fedcore deploy-local --------------------------------------------------------------------------


def run_deploy_local(args: argparse.Namespace) -> int:
    """A server here and one client process per client id on loopback (a free port); tokens in OUT/tokens."""
    from fedcore.config import load_config

    try:
        config = load_config(getattr(args, "config", None), fl_overrides(args))
    except (OSError, ValueError) as exc:
        return _usage(str(exc))
    refusal = simulation_only(config)
    if refusal is not None:
        return _usage(refusal)
    out = Path(config.out)
    token_dir = out / "tokens"
    tokens = make_tokens(config.clients, token_dir)
    _log_to_stderr()
    from fedcore.server.run import Evaluation

    evaluation = Evaluation.load(config)
    transport = open_server(config, evaluation, tokens, "127.0.0.1:0", args)
    target = f"127.0.0.1:{transport.port}"
    print(
        f"fedcore deploy-local: server on {target}, {config.clients} client processes, logs in {out}/clients",
        flush=True,
    )
    from fedcore.backends.user import is_import_path

    own_model = ("--model", config.model) if is_import_path(config.model) else ()  # each client checks it
    if args.client_delay < 0:
        return _usage(f"--client-delay must be >= 0, got {args.client_delay}")
    procs = start_clients(
        target, token_dir, range(config.clients), out / "clients", own_model, args.client_delay
    )
    try:
        summary = serve(config, evaluation, transport, args)
    finally:
        transport.close(grace_s=args.poll_s + 60.0)  # a busy client polls late
        codes = stop_clients(procs, timeout_s=args.poll_s + 30.0)
    print(json.dumps(summary, default=str))
    failed = {c: code for c, code in codes.items() if code != 0}
    if failed:
        print(f"client processes that did not exit cleanly (id: exit code): {failed}", file=sys.stderr)
    return 1 if failed else 0


def start_clients(
    target: str,
    token_dir: Path,
    client_ids: range,
    log_dir: Path,
    extra: tuple[str, ...] = (),
    delay_s: float = 0.0,
) -> dict[int, subprocess.Popen[bytes]]:
    """One `python -m fedcore.transport.grpc client` process per id, each logging to LOG_DIR/client-I.log.

    `delay_s`: client I waits delay_s x I / (n - 1) after each task, so the last is the slowest.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[int, subprocess.Popen[bytes]] = {}
    last = max(1, len(client_ids) - 1)
    for position, client_id in enumerate(client_ids):
        delay = ("--delay", repr(delay_s * position / last)) if delay_s > 0.0 else ()
        command = [
            sys.executable,
            "-m",
            "fedcore.transport.grpc",
            "client",
            "--server",
            target,
            "--token-file",
            str(client_token_file(token_dir, client_id)),
            "--client-id",
            str(client_id),
            *extra,
            *delay,
        ]
        with (log_dir / f"client-{client_id}.log").open("wb") as log_file:
            procs[client_id] = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, env=_child_env()
            )
    return procs


def stop_clients(procs: Mapping[int, subprocess.Popen[bytes]], timeout_s: float) -> dict[int, int]:
    """Wait for each client to exit (they are told the run is done), killing stragglers at the timeout."""
    end = time.monotonic() + timeout_s
    codes: dict[int, int] = {}
    for client_id, proc in procs.items():
        try:
            codes[client_id] = proc.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            codes[client_id] = proc.wait(timeout=10.0)
    return codes


def _child_env() -> dict[str, str]:
    """This process's environment with its import path, so children import the same fedcore."""
    import fedcore

    here = str(Path(fedcore.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


def _log_to_stderr(name: str = "server") -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
