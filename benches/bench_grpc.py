"""gRPC transport overhead: what one client costs a round over loopback beyond its own local training.

Run: PYTHONPATH=python python benches/bench_grpc.py [--params 1000000] [--codec quant:8] [--clients 10]
     [--rounds 10]
Workload: a GrpcServerTransport and --clients client processes (FleetClient) on 127.0.0.1; every task
carries the model as a lossless float32 frame (4 MB at 1M parameters; with --downlink-codec, the
frame a downlink-sync run sends instead), and each client's handler
returns a precomputed --codec frame at once, so a round's wall time is all transport: long-poll
wake-up, the task download, the chunked upload, the server's checks (sizes, frame header and
checksum) and the in-order fold (a counting aggregator: the decode-and-add is the aggregator's cost,
the same for every transport). Overhead per client per round = round wall / clients; the server
process's CPU time (all its threads, gRPC's included) per client is reported too. Beside it, in the
same run: copying the same bytes once with numpy (down + up), the floor any transport pays.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np

import fedcodec as fc
from fedcore.protocol import Failure, Reply, Task
from fedcore.strategies.base import FoldSum
from fedcore.transport.grpc.auth import client_token_file, make_tokens, read_token
from fedcore.transport.grpc.client import FleetClient
from fedcore.transport.grpc.limits import Limits
from fedcore.transport.grpc.server import GrpcServerTransport


class CountOnly:
    """Counts replies; the transport's cost without any aggregator's."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, reply: Reply) -> Failure | None:
        self.count += 1
        return None

    def merge(self, other: Self) -> Self:
        self.count += other.count
        return self

    def finish(self) -> FoldSum:
        return FoldSum(np.zeros(1), count=self.count)


def vector(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n, dtype=np.float32)


def serve_client(target: str, client_id: int, token_file: Path, n: int, codec: str) -> None:
    """One client process: the same precomputed frame for every task, returned without training."""
    frame = fc.from_spec(codec).encode(vector(n, client_id), seed=client_id)

    def handle(task: Task) -> Reply:
        return Reply(task.round, task.client_id, (frame,), 100, 10, 0.5)

    FleetClient(target, client_id, read_token(token_file), lambda _: handle).run()


def bench(n: int, codec: str, downlink: str, clients: int, rounds: int, warmup: int = 2) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        tokens = make_tokens(clients, Path(tmp))
        server = GrpcServerTransport(
            "127.0.0.1:0", tokens, Limits.for_model(n, codec), "{}", poll_s=5.0, max_clients=clients
        )
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--serve-client",
                    f"127.0.0.1:{server.port}",
                    str(c),
                    str(client_token_file(Path(tmp), c)),
                    "--params",
                    str(n),
                    "--codec",
                    codec,
                ]
            )
            for c in range(clients)
        ]
        try:
            if server.wait_ready(clients, timeout_s=300.0) < clients:
                raise RuntimeError("clients did not register within 300 s")
            model = fc.from_spec(downlink).encode(vector(n, 12345), seed=1)
            walls, cpus = [], []
            for r in range(warmup + rounds):
                tasks = [Task(r, c, r, model) for c in range(clients)]
                start, cpu = time.perf_counter(), time.process_time()
                outcome = server.run_round(tasks, CountOnly, deadline_s=120.0)
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                if outcome.failures:
                    raise RuntimeError(f"round {r}: {outcome.failures}")
                if r >= warmup:
                    walls.append(wall)
                    cpus.append(cpu)
        finally:
            server.close(grace_s=10.0)
            for proc in procs:
                proc.wait(timeout=30.0)
    up = len(fc.from_spec(codec).encode(vector(n, 0), seed=0))
    copy_ms = _copy_ms(len(model) + up)
    per_client = [1e3 * w / clients for w in walls]
    return {
        "round_ms_median": 1e3 * statistics.median(walls),
        "ms_per_client_median": statistics.median(per_client),
        "ms_per_client_mean": statistics.fmean(per_client),
        "server_cpu_ms_per_client": 1e3 * statistics.median(cpus) / clients,
        "down_MB": len(model) / 1e6,
        "up_MB": up / 1e6,
        "numpy_copy_ms": copy_ms,
        "x_numpy_copy": statistics.median(per_client) / copy_ms,
    }


def _copy_ms(nbytes: int, repeats: int = 20) -> float:
    """Median time to copy these bytes once with numpy: a floor for any transport."""
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--codec", default="quant:8")
    parser.add_argument(
        "--downlink-codec",
        default="none",
        help="the task's model frame: none (float32 weights) or a codec (a downlink-sync difference)",
    )
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--serve-client", nargs=3, metavar=("TARGET", "ID", "TOKEN_FILE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_client is not None:
        target, client_id, token_file = args.serve_client
        serve_client(target, int(client_id), Path(token_file), args.params, args.codec)
        return
    numbers = bench(args.params, args.codec, args.downlink_codec, args.clients, args.rounds)
    command = "PYTHONPATH=python python benches/bench_grpc.py " + " ".join(sys.argv[1:])
    print(f"{command.strip()}\n" + ", ".join(f"{k}={v:.3f}" for k, v in numbers.items()), flush=True)


if __name__ == "__main__":
    main()
