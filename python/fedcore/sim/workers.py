"""Simulation workers: each builds one model once, holds the dataset, and trains its share of the round."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from fedcore.backends.base import ModelAdapter
from fedcore.backends.models import torch_mlp_without_torch
from fedcore.backends.user import UserModel, is_import_path
from fedcore.client import ClientApp, ClientState
from fedcore.client.app import run_model
from fedcore.client.batched import job_refusal
from fedcore.config import FLConfig
from fedcore.data import FederatedData, build_federated
from fedcore.protocol.aggregator import Aggregator
from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.protocol.transport import AggregatorFactory, ReplyInfo, fold_answer, outcome_of
from fedcore.sim import handover
from fedcore.sim.attack import poisoned_data
from fedcore.sim.profile import WorkTiming


@dataclass(frozen=True)
class WorkerJob:
    """One worker's share of a round: its tasks in order, each client's state, and how to fold."""

    tasks: tuple[Task, ...]
    states: tuple[ClientState, ...]
    make_aggregator: AggregatorFactory


@dataclass(frozen=True)
class WorkerResult:
    """A worker's partial fold, what it accepted and refused (task order), and each client's new state."""

    aggregator: Aggregator
    replies: tuple[ReplyInfo, ...]
    failures: tuple[Failure, ...]
    states: tuple[ClientState, ...]
    timing: WorkTiming = field(default_factory=WorkTiming)


class WorkerError(RuntimeError):
    """A worker failed; the message carries its traceback."""


def load_data(config: FLConfig) -> FederatedData:
    return build_federated(
        config.dataset, config.clients, config.partition, config.seed, test_fraction=config.test_fraction
    )


def needs_torch(config: FLConfig) -> bool:
    """Whether the run's built-in model imports torch: not an MLP whose clients all train stacked (numpy)."""
    if config.backend != "torch" or is_import_path(config.model):
        return False
    stacked = config.vectorize is not False and job_refusal(config) is None and config.device == "cpu"
    return not (stacked and config.model in ("mlp", "logreg") and config.personalize is None)


def build_model(config: FLConfig, data: FederatedData, user: UserModel | None = None) -> ModelAdapter:
    """Every process builds the same initial model from the config's seed (yours, when `user` is given).

    The built-in torch MLP of a job whose clients all train stacked runs in numpy, with torch's initial
    weights bit for bit, so such a run never imports torch.
    """
    builtin_torch = config.backend == "torch" and not is_import_path(config.model)
    if user is None and builtin_torch and not needs_torch(config):
        return torch_mlp_without_torch(config.model, data.in_features, data.n_classes, config.seed)
    return run_model(config, data.in_features, data.n_classes, user)


def limit_threads(config: FLConfig, user: UserModel | None = None) -> None:
    """One BLAS/torch thread per worker: workers are the parallelism, and results stay reproducible.

    numpy's OpenBLAS would otherwise start a thread per core for each small matmul; on a busy machine
    the threads wait for each other (scoring the digits test set took 56 ms instead of 0.3). With your
    own model, torch counts only once your code has imported it (an mlx model never loads it).
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    threadpool_limits(1, user_api="blas")
    if user is not None or is_import_path(config.model):
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
    elif needs_torch(config):
        import torch

        torch.set_num_threads(1)


class ClientRunner:
    """The simulated devices a worker hosts: one ClientApp on one persistent model, states given per job."""

    def __init__(self, config: FLConfig, data: FederatedData, user: UserModel | None = None) -> None:
        data_for = poisoned_data(config, lambda cid: data.client(cid).train)
        self._app = ClientApp(config, data_for, build_model(config, data, user))

    def run(self, job: WorkerJob) -> WorkerResult:
        aggregator = job.make_aggregator()
        for task, state in zip(job.tasks, job.states, strict=True):
            self._app.store.put(task.client_id, state)
        start = time.perf_counter()
        answers = self._app.handle_many(job.tasks)
        handled = time.perf_counter()
        folded = [fold_answer(aggregator, answer) for answer in answers]
        outcome = outcome_of(aggregator, folded)
        states = tuple(self._app.store.get(task.client_id) for task in job.tasks)
        train_s = sum(a.train_s for a in answers if isinstance(a, Reply))
        timing = WorkTiming(train_s, max(0.0, handled - start - train_s), time.perf_counter() - handled)
        return WorkerResult(aggregator, outcome.replies, outcome.failures, states, timing)


class Pool(Protocol):
    """Runs one job per worker and returns results in the same order.

    `meanwhile` runs in this process while the workers train (after the jobs went out, before the
    results are read): the secure round's key stages, which need no update, hide behind training there.
    """

    @property
    def size(self) -> int: ...

    def run(
        self, jobs: Sequence[WorkerJob], meanwhile: Callable[[], None] | None = None
    ) -> list[WorkerResult]: ...

    def close(self) -> None: ...


class InlinePool:
    """The single-process mode: the same ClientRunner code path, in this process, for debugging."""

    def __init__(self, config: FLConfig, data: FederatedData, user: UserModel | None = None) -> None:
        limit_threads(config, user)
        self._runner = ClientRunner(config, data, user)
        limit_threads(config, user)  # again: building your model may have imported torch

    @property
    def size(self) -> int:
        return 1

    def run(
        self, jobs: Sequence[WorkerJob], meanwhile: Callable[[], None] | None = None
    ) -> list[WorkerResult]:
        if meanwhile is not None:  # one process: nothing to overlap with, so simply first
            meanwhile()
        return [self._runner.run(job) for job in jobs]

    def close(self) -> None:
        """Nothing to release in-process."""


def _worker_main(
    conn: Connection, config: FLConfig, data: FederatedData, rayon_threads: int, user: UserModel | None
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it terminates us
    sender = handover.Sender(conn)
    try:
        # the codec's Rust thread pool starts on first use: give each worker its share of the cores
        os.environ.setdefault("RAYON_NUM_THREADS", str(rayon_threads))
        limit_threads(config, user)
        runner = ClientRunner(config, data, user)
        limit_threads(config, user)  # again: building your model may have imported torch
    except Exception:  # any failure goes to the parent, which raises it
        _answer(sender, ("error", traceback.format_exc()))
        return
    if not _answer(sender, ("ready", None)):
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe (done, or Ctrl-C mid-message)
            return
        if job is None:
            return
        result: tuple[str, Any]
        try:
            result = ("ok", runner.run(job))
        except Exception:  # any failure goes to the parent, which raises it
            result = ("error", traceback.format_exc())
        if not _answer(sender, result):
            return


def _answer(sender: handover.Sender, message: tuple[str, Any]) -> bool:
    """Send to the parent; False when it is gone (after Ctrl-C nobody reads: no error worth printing)."""
    try:
        sender.send(message)
    except OSError:  # BrokenPipeError, ConnectionResetError
        return False
    return True


_BACKEND_MODULES = {
    "torch": ("torch", "fedcore.backends.torch_backend"),
    "mlx": ("mlx.core", "fedcore.backends.mlx_backend"),
    "sklearn": ("sklearn.linear_model", "sklearn.neural_network", "fedcore.backends.sklearn_backend"),
}


def _context(config: FLConfig) -> Any:
    """Forkserver where there is one: heavy imports happen once in the server; workers fork from it."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    backend = _BACKEND_MODULES[config.backend] if config.backend != "torch" or needs_torch(config) else ()
    ctx.set_forkserver_preload(["fedcore.sim.workers", *backend])
    # (the preload list only counts before the server's first start; later pools reuse that server)
    return ctx


def prestart_workers(config: FLConfig) -> None:
    """Start the forkserver (and its imports) now, so it gets ready while this process loads the data."""
    if config.engine == "process" and config.num_workers > 1 and "forkserver" in mp.get_all_start_methods():
        from multiprocessing import forkserver

        _context(config)  # sets the preload list, which only counts before the server starts
        forkserver.ensure_running()


class ProcessPool:
    """N worker processes, one pipe each; jobs go out together and results come back in worker order."""

    def __init__(
        self, config: FLConfig, data: FederatedData, workers: int, user: UserModel | None = None
    ) -> None:
        if user is not None:
            user.check_picklable()
        ctx = _context(config)
        rayon_threads = max(1, (os.cpu_count() or 1) // workers)
        self._conns: list[Connection] = []
        self._receivers: list[handover.Receiver] = []
        self._procs: list[Any] = []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            args = (child, config, data, rayon_threads, user)
            proc = ctx.Process(target=_worker_main, args=args, daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._receivers.append(handover.Receiver(parent))
            self._procs.append(proc)
        try:
            for receiver in self._receivers:
                self._receive(receiver)
        except BaseException:
            self._terminate()
            raise

    @property
    def size(self) -> int:
        return len(self._conns)

    def run(
        self, jobs: Sequence[WorkerJob], meanwhile: Callable[[], None] | None = None
    ) -> list[WorkerResult]:
        if len(jobs) > self.size:
            raise ValueError(f"{len(jobs)} jobs for {self.size} workers")
        for conn, job in zip(self._conns, jobs, strict=False):
            conn.send(job)
        try:
            if meanwhile is not None:
                meanwhile()
            return [self._receive(receiver) for receiver, _ in zip(self._receivers, jobs, strict=False)]
        except BaseException:
            self._terminate()  # the others may be blocked sending results nobody will read
            raise

    @staticmethod
    def _receive(receiver: handover.Receiver) -> Any:
        try:
            status, payload = receiver.receive()
        except EOFError:
            raise WorkerError("a simulation worker exited unexpectedly") from None
        if status == "error":
            raise WorkerError(f"simulation worker failed:\n{payload}")
        return payload

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
            conn.close()
        for receiver in self._receivers:
            receiver.close()
        for proc in self._procs:
            proc.join(timeout=5)
        self._terminate()

    def _terminate(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
                proc.join()


def make_pool(config: FLConfig, data: FederatedData, user: UserModel | None = None) -> Pool:
    """config.num_workers processes; left to the default, your model gets one per core if it pickles.

    `engine = "ray"`: Ray actors instead (fedcore.sim.ray_pool), the same split and fold order.
    """
    if config.engine == "ray":
        return ray_pool(config, data, user)
    workers = config.num_workers
    if user is not None and config.workers is None:
        cores = os.cpu_count() or 1
        workers = min(cores, config.per_round) if cores > 1 and user.pickle_error() is None else 0
    return ProcessPool(config, data, workers, user) if workers > 1 else InlinePool(config, data, user)


def split_round_robin(items: Sequence[Any], workers: int) -> list[list[Any]]:
    """Position i goes to worker i mod W: a fixed assignment, so the fold order never changes between runs."""
    return [list(items[w::workers]) for w in range(workers)]


# --- simulation engine (issue 14: Ray) ---
RAY_MISSING = "--engine ray needs Ray: pip install 'fedcore[ray]' (or 'ray>=2.10')"


def ray_pool(config: FLConfig, data: FederatedData, user: UserModel | None = None) -> Pool:
    """Ray actors (fedcore.sim.ray_pool), or a WorkerError that says how to install Ray, an optional extra."""
    try:
        from fedcore.sim.ray_pool import RayPool
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "ray":
            raise
        raise WorkerError(RAY_MISSING) from None
    return RayPool(config, data, user)
