"""Simulation workers: each builds one model once, holds the dataset, and trains its share of clients."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import ModelAdapter, TrainConfig
from fedcore.backends.models import make_adapter
from fedcore.client import ClientTask, DivergedUpdateError, run_client
from fedcore.compression import Encoder, Vector
from fedcore.config import FLConfig
from fedcore.data import FederatedData, build_federated
from fedcore.personalize.rounds import DittoRounds, LocalHead, make_ditto_rounds, make_local_head
from fedcore.powersgd import PowerSGD
from fedcore.server import FoldBuilder
from fedcore.strategies.base import FoldSum

if TYPE_CHECKING:
    from fedcore.partial import Mask


@dataclass(frozen=True)
class RoundTask:
    """One worker's share of a round: the broadcast weights, its clients in order, and the round's mask."""

    round: int
    weights: Vector
    server_control: Vector | None
    train: TrainConfig
    clients: tuple[ClientTask, ...]
    mask: Mask | None = None


@dataclass(frozen=True)
class ClientReport:
    """Per-client facts the engine keeps: loss for selection; the rest is the client's state for next time."""

    client_id: int
    num_examples: int
    num_steps: int
    loss: float
    uplink_bytes: int
    residual: Vector | None
    control: Vector | None
    train_s: float
    compressor: PowerSGD | None = None
    head: Vector | None = None
    personal: Vector | None = None
    diverged: bool = False  # training blew up: nothing was sent and the client's state is as it was

    @classmethod
    def from_diverged(cls, task: ClientTask) -> ClientReport:
        """A client whose update is dropped, as a server drops a failed client; it keeps its old state."""
        return cls(
            task.client_id,
            num_examples=0,
            num_steps=0,
            loss=0.0,
            uplink_bytes=0,
            residual=task.residual,
            control=task.control,
            train_s=0.0,
            compressor=task.compressor,
            head=task.head,
            personal=task.personal,
            diverged=True,
        )


@dataclass(frozen=True)
class WorkerResult:
    """A worker's partial fold of its clients and their reports, in task order."""

    fold: FoldSum
    reports: tuple[ClientReport, ...]


class WorkerError(RuntimeError):
    """A worker failed; the message carries its traceback."""


def load_data(config: FLConfig) -> FederatedData:
    return build_federated(
        config.dataset, config.clients, config.partition, config.seed, test_fraction=config.test_fraction
    )


def build_model(config: FLConfig, data: FederatedData) -> ModelAdapter:
    """Every process builds the same initial model from the config's seed."""
    return make_adapter(config.backend, config.model, data.in_features, data.n_classes, config.seed)


def limit_threads(config: FLConfig) -> None:
    """One BLAS/torch thread per worker: workers are the parallelism, and results stay reproducible."""
    if config.backend == "torch":
        import torch

        torch.set_num_threads(1)


class ClientRunner:
    """Trains clients one after another on one persistent model, folding each update as it arrives."""

    def __init__(self, config: FLConfig, data: FederatedData, adapter: ModelAdapter) -> None:
        self._data = data
        self._adapter = adapter
        self._strategy = config.make_strategy()
        self._codec = config.codec
        self._error_feedback = config.error_feedback
        self._encoders: dict[tuple[str | None, bool], Encoder] = {}
        self._size = adapter.layout.size
        self._local_head = _local_head(config, adapter)
        self._ditto = make_ditto_rounds(config.personalize) if config.ditto_rounds else None

    def _encoder(self, spec: str | None, error_feedback: bool) -> Encoder:
        """One encoder per (spec, error feedback), built on first use: adaptive runs switch per client."""
        key = (spec, error_feedback)
        if key not in self._encoders:
            self._encoders[key] = Encoder(spec, error_feedback)
        return self._encoders[key]

    def run(self, task: RoundTask) -> WorkerResult:
        builder = FoldBuilder(self._size, task.server_control is not None, task.mask)
        reports: list[ClientReport] = []
        for client in task.clients:
            train = self._data.client(client.client_id).train
            spec = client.codec if client.codec is not None else self._codec
            received = client.weights if client.weights is not None else task.weights
            try:
                update = run_client(
                    self._adapter,
                    train.x,
                    train.y,
                    received,
                    task.train,
                    client,
                    self._encoder(spec, self._error_feedback),
                    self._encoder(spec, False),
                    task.server_control,
                    task.mask,
                    self._local_head,
                )
            except DivergedUpdateError:
                reports.append(ClientReport.from_diverged(client))
                continue
            personal = None
            if self._ditto is not None:
                personal = self._personal_step(self._ditto, train.x, train.y, received, task.train, client)
            builder.add(update, self._strategy.coefficient(update.num_examples, update.num_steps))
            reports.append(
                ClientReport(
                    update.client_id,
                    update.num_examples,
                    update.num_steps,
                    update.loss,
                    update.uplink_bytes,
                    update.residual,
                    update.control,
                    update.train_s,
                    update.compressor,
                    update.head,
                    personal,
                )
            )
        return WorkerResult(builder.finish(), tuple(reports))

    def _personal_step(
        self,
        ditto: DittoRounds,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        received: Vector,
        train: TrainConfig,
        client: ClientTask,
    ) -> Vector:
        """Ditto's personal epochs (a straggler's fewer), seeded apart from the global update's."""
        config = replace(train, seed=client.personal_seed, epochs=client.epochs or train.epochs)
        return ditto.update(self._adapter, x, y, client.personal, received, config)


def _local_head(config: FLConfig, adapter: ModelAdapter) -> LocalHead | None:
    if not config.local_head:
        return None
    return make_local_head(config.personalize, config.local_epochs, adapter.layout)


class Pool(Protocol):
    """Runs one task per worker and returns results in the same order."""

    @property
    def size(self) -> int: ...

    def run(self, tasks: Sequence[RoundTask]) -> list[WorkerResult]: ...

    def close(self) -> None: ...


class InlinePool:
    """The single-process mode: the same ClientRunner code path, in this process, for debugging."""

    def __init__(self, config: FLConfig, data: FederatedData) -> None:
        limit_threads(config)
        self._runner = ClientRunner(config, data, build_model(config, data))

    @property
    def size(self) -> int:
        return 1

    def run(self, tasks: Sequence[RoundTask]) -> list[WorkerResult]:
        return [self._runner.run(task) for task in tasks]

    def close(self) -> None:
        """Nothing to release in-process."""


def _worker_main(conn: Connection, config: FLConfig, data: FederatedData) -> None:
    try:
        limit_threads(config)
        runner = ClientRunner(config, data, build_model(config, data))
    except Exception:  # any failure goes to the parent, which raises it
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            conn.send(("ok", runner.run(task)))
        except Exception:  # any failure goes to the parent, which raises it
            conn.send(("error", traceback.format_exc()))


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
    ctx.set_forkserver_preload(["fedcore.sim.workers", *_BACKEND_MODULES[config.backend]])
    # (the preload list only counts before the server's first start; later pools reuse that server)
    return ctx


class ProcessPool:
    """N worker processes, one pipe each; tasks go out together and results come back in worker order."""

    def __init__(self, config: FLConfig, data: FederatedData, workers: int) -> None:
        ctx = _context(config)
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, config, data), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        try:
            for conn in self._conns:
                self._receive(conn)
        except BaseException:
            self._terminate()
            raise

    @property
    def size(self) -> int:
        return len(self._conns)

    def run(self, tasks: Sequence[RoundTask]) -> list[WorkerResult]:
        if len(tasks) > self.size:
            raise ValueError(f"{len(tasks)} tasks for {self.size} workers")
        for conn, task in zip(self._conns, tasks, strict=False):
            conn.send(task)
        try:
            return [self._receive(conn) for conn, _ in zip(self._conns, tasks, strict=False)]
        except BaseException:
            self._terminate()  # the others may be blocked sending results nobody will read
            raise

    @staticmethod
    def _receive(conn: Connection) -> Any:
        try:
            status, payload = conn.recv()
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
        for proc in self._procs:
            proc.join(timeout=5)
        self._terminate()

    def _terminate(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
                proc.join()


def make_pool(config: FLConfig, data: FederatedData) -> Pool:
    workers = config.num_workers
    return ProcessPool(config, data, workers) if workers > 1 else InlinePool(config, data)


def split_round_robin(items: Sequence[Any], workers: int) -> list[list[Any]]:
    """Position i goes to worker i mod W: a fixed assignment, so the fold order never changes between runs."""
    return [list(items[w::workers]) for w in range(workers)]
