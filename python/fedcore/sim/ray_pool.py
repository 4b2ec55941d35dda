"""Simulation workers as Ray actors: the process pool's ClientRunner, on a local Ray or an existing cluster.

Each actor builds one model and reads the dataset from Ray's object store (put there once), then trains
the share of a round SimTransport gives it. Results come back in actor order, so for the same number of
workers the run folds in the same order as the process pool and gives the same numbers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

import ray
from ray.actor import ActorHandle
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

from fedcore.backends.user import UserModel
from fedcore.config import FLConfig
from fedcore.data import FederatedData
from fedcore.sim.workers import ClientRunner, WorkerError, WorkerJob, WorkerResult, limit_threads

START_TIMEOUT_S = 300.0  # every actor has built its model and read the data (a cold node imports torch)
ROUND_TIMEOUT_S = 3600.0  # one round's share on one actor; a dead actor is reported at once, not after this
CONNECT_TIMEOUT_S = 10.0  # the cluster's address answers at all (ray.init itself would retry for minutes)

T = TypeVar("T")


class RayWorker:
    """One Ray actor: a ClientRunner built once, then a round's share per call, as in a worker process."""

    def __init__(
        self,
        config: FLConfig,
        data: FederatedData,
        rayon_threads: int,
        user: UserModel | None,
        driver_path: Sequence[str],
    ) -> None:
        # your --model MODULE:FUNCTION imports here as in the driver (a worker process gets its sys.path)
        sys.path.extend(p for p in driver_path if p not in sys.path and os.path.isdir(p))
        # the codec's Rust thread pool starts on first use: give each actor its share of the node's cores
        os.environ.setdefault("RAYON_NUM_THREADS", str(rayon_threads))
        limit_threads(config, user)
        self._runner = ClientRunner(config, data, user)
        limit_threads(config, user)  # again: building your model may have imported torch

    def ready(self) -> bool:
        """Answers once the constructor has finished, so the pool can wait for every actor with a timeout."""
        return True

    def run(self, job: WorkerJob) -> WorkerResult:
        return self._runner.run(job)


class RayPool:
    """N Ray actors, one job each per round; results come back in actor order, with a timeout.

    N is config.workers (0 or 1: one actor), or, left to the default, one per CPU of the cluster, at
    most one per client of a round. Ray is started locally (quiet, no dashboard) unless this process
    is already connected or config.ray_address names a cluster; `close` shuts down only a Ray it started.
    """

    def __init__(
        self,
        config: FLConfig,
        data: FederatedData,
        user: UserModel | None = None,
        *,
        start_timeout_s: float = START_TIMEOUT_S,
        round_timeout_s: float = ROUND_TIMEOUT_S,
    ) -> None:
        if user is not None:
            user.check_picklable()
        self._round_timeout_s = round_timeout_s
        self._actors: list[ActorHandle[RayWorker]] = []
        self._size = 0  # what summary.json reports, after close too
        self._started = connect(config)
        try:
            resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
            cpus = int(resources.get("CPU", 1))
            workers = ray_workers(config, cpus)
            if workers > cpus:  # the actors would wait forever (a Ray we start has a CPU per worker)
                raise WorkerError(f"--workers {workers} needs {workers} CPUs; the Ray cluster has {cpus}")
            self._start(config, data, user, workers, max(1, cpus // workers), start_timeout_s)
        except BaseException:
            self.close()
            raise

    def _start(
        self,
        config: FLConfig,
        data: FederatedData,
        user: UserModel | None,
        workers: int,
        rayon_threads: int,
        timeout_s: float,
    ) -> None:
        actor = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(RayWorker)
        shared = ray.put(data)  # once; every actor reads the same copy from the object store
        for _ in range(workers):
            handle = actor.remote(config, shared, rayon_threads, user, list(sys.path))
            self._actors.append(cast("ActorHandle[RayWorker]", handle))  # (typed as handle | class)
        self._size = workers
        ready: list[ray.ObjectRef[bool]] = [a.ready.remote() for a in self._actors]
        _get(ready, timeout_s, "starting")

    @property
    def size(self) -> int:
        return self._size

    def run(
        self, jobs: Sequence[WorkerJob], meanwhile: Callable[[], None] | None = None
    ) -> list[WorkerResult]:
        if len(jobs) > len(self._actors):
            raise ValueError(f"{len(jobs)} jobs for {len(self._actors)} workers")
        pending: list[ray.ObjectRef[WorkerResult]] = [
            a.run.remote(job) for a, job in zip(self._actors, jobs, strict=False)
        ]
        if meanwhile is not None:  # this process's work while the actors train
            meanwhile()
        return _get(pending, self._round_timeout_s, "running a round")

    def close(self) -> None:
        """Kill our actors (they hold the model and the data); shut Ray down only if we started it."""
        for handle in self._actors:
            with contextlib.suppress(RayError, ValueError):  # already dead, or Ray already gone
                ray.kill(handle, no_restart=True)
        self._actors = []
        if self._started:
            ray.shutdown()
            self._started = False


def _get(refs: list[ray.ObjectRef[T]], timeout_s: float, doing: str) -> list[T]:
    """ray.get in order, every Ray failure turned into a WorkerError that says what happened."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except GetTimeoutError:
        raise WorkerError(
            f"Ray simulation workers gave no answer within {timeout_s:.0f} s while {doing}"
        ) from None
    except RayActorError as exc:
        raise WorkerError(f"a Ray simulation worker died while {doing}: {exc}") from None
    except RayTaskError as exc:
        raise WorkerError(f"simulation worker failed:\n{exc}") from None
    except RayError as exc:
        raise WorkerError(f"Ray failed while {doing}: {exc}") from None


def ray_workers(config: FLConfig, cluster_cpus: int) -> int:
    """Actors to start: --workers (at least 1), else one per cluster CPU; at most the clients of a round."""
    wanted = config.workers if config.workers is not None else cluster_cpus
    return max(1, min(wanted, config.per_round))


def connect(config: FLConfig) -> bool:
    """Connect to config.ray_address, or start a local Ray; False when this process was already connected."""
    if ray.is_initialized():
        return False
    with warnings.catch_warnings():
        # ray.init warns about a future change to GPU visibility; it concerns nobody here
        warnings.simplefilter("ignore", FutureWarning)
        try:
            if config.ray_address is None:
                cpus = max(os.cpu_count() or 1, config.workers or 1)  # every actor gets its CPU
                ray.init(
                    "local",  # a fresh one, even where `ray start` runs here (that is --ray-address auto)
                    num_cpus=cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
            else:
                check_reachable(config.ray_address)
                ray.init(address=config.ray_address, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = config.ray_address or "a local Ray"
            raise WorkerError(f"cannot start Ray on {where}: {exc}") from None
    return True


def check_reachable(address: str) -> None:
    """A ConnectionError within CONNECT_TIMEOUT_S when nothing listens at the address (Ray would retry on).

    `auto` is resolved as Ray resolves it (RAY_ADDRESS, then the cluster this machine last started).
    """
    target = address.removeprefix("ray://")
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        resolved = canonicalize_bootstrap_address("auto")  # ConnectionError when no cluster is known
        if resolved is None:
            raise ConnectionError("no running Ray cluster found (ray start --head, or set RAY_ADDRESS)")
        target = resolved
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {target} ({exc.strerror or exc})") from None
