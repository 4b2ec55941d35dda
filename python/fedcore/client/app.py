"""One client's side of a round: rebuild the model, train, run the uplink chain, reply; no transport here."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from fedcore.backends.base import ModelAdapter, TrainConfig
from fedcore.backends.models import make_adapter
from fedcore.backends.user import UserModel, is_import_path
from fedcore.client.batched import BatchedTrainer, ClientTraining, Trained, batched_trainer_for
from fedcore.client.local_dp import LocalDP
from fedcore.client.state import ClientState, ClientStateStore
from fedcore.config import FLConfig
from fedcore.data.dataset import Dataset
from fedcore.downlink import reconstruct
from fedcore.personalize.rounds import DittoRounds, LocalHead, make_ditto_rounds, make_local_head
from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.strategies.scaffold import client_control_update
from fedcore.uplink import UplinkChain, UplinkContext, decode_frame, encode_frame, mask_from_bytes
from fedcore.uplink.base import Vector

if TYPE_CHECKING:
    from fedcore.partial import Mask


class DivergedUpdateError(ValueError):
    """Local training left non-finite weights: the update cannot be encoded and must not be averaged."""

    def __init__(self, client_id: int) -> None:
        super().__init__(f"client {client_id}: local training produced non-finite weights (diverged)")
        self.client_id = client_id


def base_train_config(config: FLConfig) -> TrainConfig:
    """The run's local SGD settings before any strategy adds to them."""
    return TrainConfig(
        epochs=config.local_epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


def local_train_config(config: FLConfig) -> TrainConfig:
    """The run's local SGD settings as the strategy wants them (FedProx adds its proximal term)."""
    return config.make_strategy().client_config(base_train_config(config))


@dataclass(frozen=True)
class TaskSettings:
    """The per-client, per-round knobs a task carries in `settings`."""

    train_seed: int
    codec_seed: int
    epochs: int | None = None  # a straggler's own local epochs
    codec: str | None = None  # the codec adaptive compression picked for this client
    personal_seed: int = 0  # Ditto in rounds
    dp_clip: float | None = None  # user-level DP: this round's clip norm

    @classmethod
    def of(cls, task: Task) -> TaskSettings:
        return cls(**task.settings)


class ClientApp:
    """Trains whichever client a task names, on that client's data, with that client's own state.

    The same object serves one client in a real client process and many in a simulation worker.
    """

    def __init__(
        self,
        config: FLConfig,
        data_for: Callable[[int], Dataset],
        adapter: ModelAdapter | None = None,
        store: ClientStateStore | None = None,
    ) -> None:
        self._config = config
        self._data_for = data_for
        self._adapter = adapter if adapter is not None else _build_adapter(config, data_for)
        self._initial = self._adapter.get_weights()
        self._train = local_train_config(config)
        self._chain = UplinkChain.from_config(config)
        self._with_control = config.make_strategy().uses_control
        self._local_head: LocalHead | None = (
            make_local_head(config.personalize, config.local_epochs, self._adapter.layout)
            if config.local_head
            else None
        )
        self._ditto: DittoRounds | None = (
            make_ditto_rounds(config.personalize) if config.ditto_rounds else None
        )
        self._local_dp = LocalDP.from_config(config)
        self.store = store if store is not None else ClientStateStore()

    @property
    def adapter(self) -> ModelAdapter:
        return self._adapter

    def handle(self, task: Task) -> Reply | Failure:
        """Train on the task; a diverged client replies with a failure and keeps the state it had."""
        job = self._prepare(task)
        return self._conclude(job, self._train_one(job))

    @cached_property
    def _batched(self) -> BatchedTrainer | None:
        """Decided on the first job, so a process that only ever handles one task never hears of it."""
        return batched_trainer_for(self._config, self._adapter)

    def handle_many(self, tasks: Sequence[Task]) -> list[Reply | Failure]:
        """Every task of a job, in order; clients train together as one batched model where the job allows.

        Only training is batched: each client's uplink chain and state update run as `handle` runs them.
        """
        batched = self._batched
        if not isinstance(batched, BatchedTrainer) or len(tasks) < 2:
            return [self.handle(task) for task in tasks]
        jobs = [self._prepare(task) for task in tasks]
        trained = batched.train(self._adapter, [job.training() for job in jobs])
        return [self._conclude(job, result) for job, result in zip(jobs, trained, strict=True)]

    def _conclude(self, job: _Job, trained: Trained) -> Reply | Failure:
        """Finish a trained task and keep the client's new state; a diverged client keeps the one it had."""
        try:
            reply, new_state = self._finish(job, trained)
        except DivergedUpdateError as exc:
            return Failure(job.task.round, job.task.client_id, "diverged", str(exc))
        self.store.put(job.task.client_id, new_state)
        return reply

    def _received(self, task: Task, state: ClientState) -> tuple[Vector, ClientState]:
        """The model this task hands over: as sent, or what this client held plus the sent difference."""
        if not task.model_is_diff:
            return decode_frame(task.model), state
        known = state.model if state.model is not None else self._initial
        model = reconstruct(known, task.model)
        return model, replace(state, model=model)

    def _prepare(self, task: Task) -> _Job:
        """Everything the task decides before training: start weights, SCAFFOLD correction, settings."""
        settings = TaskSettings.of(task)
        received, state = self._received(task, self.store.get(task.client_id))
        server_control = decode_frame(task.control) if task.control is not None else None
        c_i = correction = None
        if server_control is not None:
            c_i = state.control if state.control is not None else np.zeros_like(server_control)
            correction = (server_control - c_i).astype(np.float32)
        start_weights = received
        if self._local_head is not None:
            start_weights = self._local_head.with_head(received, state.head)
        local = replace(self._train, seed=settings.train_seed, epochs=settings.epochs or self._train.epochs)
        data = self._data_for(task.client_id)
        return _Job(
            task, settings, state, received, start_weights, server_control, c_i, correction, local, data
        )

    def _train_one(self, job: _Job) -> Trained:
        """Local training of one client on the app's model, as the backend does it."""
        adapter = self._adapter
        adapter.set_weights(job.start_weights)
        start = time.perf_counter()
        num_examples, num_steps, loss = 0, 0, 0.0
        data = job.data
        metrics: dict[str, float] = {}
        kept: dict[str, Any] = {}
        if data.y.size:
            if self._local_dp is not None:
                private = self._local_dp.fit(adapter, data.x, data.y, job.local, job.state)
                num_examples, num_steps, loss = private.num_examples, private.num_steps, private.loss
                metrics, kept = dict(private.metrics), dict(private.state)
            else:
                if self._local_head is not None:
                    result = self._local_head.fit(adapter, data.x, data.y, job.local)
                else:
                    result = adapter.fit(data.x, data.y, job.local, control=job.correction)
                num_examples, num_steps, loss = result.num_examples, result.num_steps, result.loss
                metrics = dict(result.metrics)
        train_s = time.perf_counter() - start
        return Trained(adapter.get_weights(), num_examples, num_steps, loss, train_s, metrics, kept)

    def _finish(self, job: _Job, trained: Trained) -> tuple[Reply, ClientState]:
        """The uplink chain, SCAFFOLD's control update and Ditto's personal step on a trained client."""
        task, settings, state = job.task, job.settings, job.state
        start_weights, new_weights = job.start_weights, trained.weights
        if not np.isfinite(new_weights).all():
            raise DivergedUpdateError(task.client_id)
        delta = (new_weights - start_weights).astype(np.float32)
        head = None
        if self._local_head is not None:
            head = new_weights[self._local_head.head]
            delta[self._local_head.head] = 0.0
        stages = dict(state.stages)
        mask: Mask | None = mask_from_bytes(task.mask) if task.mask is not None else None
        ctx = UplinkContext(
            self._adapter.layout, task.client_id, settings.codec_seed, settings.codec, mask, settings.dp_clip
        )
        ctx = replace(ctx, round=task.round)
        stages.update(trained.stages)
        encoded = self._chain.encode(delta, ctx, stages)
        payloads = [encoded.payload]
        metrics = {**encoded.metrics, **trained.metrics}
        new_control = state.control
        if job.server_control is not None and job.c_i is not None:
            new_control = client_control_update(
                job.c_i, job.server_control, start_weights, new_weights, trained.num_steps, self._train.lr
            )
            spec = settings.codec if settings.codec is not None else self._config.codec
            payloads.append(encode_frame(spec, new_control - job.c_i, settings.codec_seed ^ 1))
        personal = state.personal
        if self._ditto is not None:
            config = replace(job.local, seed=settings.personal_seed)
            data = job.data
            personal = self._ditto.update(self._adapter, data.x, data.y, state.personal, job.received, config)
        reply = Reply(
            task.round,
            task.client_id,
            tuple(payloads),
            trained.num_examples,
            trained.num_steps,
            trained.loss,
            trained.train_s,
            metrics,
        )
        kept = replace(
            state,
            stages=stages,
            control=new_control,
            head=head if head is not None else state.head,
            personal=personal,
        )
        return reply, kept


@dataclass(frozen=True)
class _Job:
    """One task made ready to train: what `_finish` needs besides the trained weights."""

    task: Task
    settings: TaskSettings
    state: ClientState  # with the downlink model rebuilt
    received: Vector
    start_weights: Vector
    server_control: Vector | None
    c_i: Vector | None
    correction: Vector | None  # SCAFFOLD's c - c_i
    local: TrainConfig
    data: Dataset

    def training(self) -> ClientTraining:
        return ClientTraining(self.start_weights, self.data.x, self.data.y, self.local, self.correction)


def _build_adapter(config: FLConfig, data_for: Callable[[int], Dataset]) -> ModelAdapter:
    """The run's model, built from its seed, so every client starts from the server's initial weights."""
    sample = data_for(0)
    return run_model(config, sample.in_features, sample.n_classes)


def run_model(
    config: FLConfig, in_features: int, n_classes: int, user: UserModel | None = None
) -> ModelAdapter:
    """Your model (`user`, or config.model as an import path), else the built-in one config.model names."""
    if user is None and is_import_path(config.model):
        user = UserModel(config.model)
    if user is not None:
        return user.build(in_features, n_classes, config.seed, config.device)
    return make_adapter(
        config.backend, config.model, in_features, n_classes, config.seed, device=config.device
    )
