"""One client's side of a round: rebuild the model, train, run the uplink chain, reply; no transport here."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from fedcore.backends.base import ModelAdapter, TrainConfig
from fedcore.backends.models import make_adapter
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
        state = self.store.get(task.client_id)
        try:
            reply, new_state = self._run(task, state)
        except DivergedUpdateError as exc:
            return Failure(task.round, task.client_id, "diverged", str(exc))
        self.store.put(task.client_id, new_state)
        return reply

    def _received(self, task: Task, state: ClientState) -> tuple[Vector, ClientState]:
        """The model this task hands over: as sent, or what this client held plus the sent difference."""
        if not task.model_is_diff:
            return decode_frame(task.model), state
        known = state.model if state.model is not None else self._initial
        model = reconstruct(known, task.model)
        return model, replace(state, model=model)

    def _run(self, task: Task, state: ClientState) -> tuple[Reply, ClientState]:
        settings = TaskSettings.of(task)
        received, state = self._received(task, state)
        server_control = decode_frame(task.control) if task.control is not None else None
        mask: Mask | None = mask_from_bytes(task.mask) if task.mask is not None else None
        data = self._data_for(task.client_id)
        c_i = correction = None
        if server_control is not None:
            c_i = state.control if state.control is not None else np.zeros_like(server_control)
            correction = (server_control - c_i).astype(np.float32)
        start_weights = received
        if self._local_head is not None:
            start_weights = self._local_head.with_head(received, state.head)
        adapter = self._adapter
        adapter.set_weights(start_weights)
        local = replace(self._train, seed=settings.train_seed, epochs=settings.epochs or self._train.epochs)
        start = time.perf_counter()
        num_examples, num_steps, loss = 0, 0, 0.0
        fit_metrics: dict[str, float] = {}
        if data.y.size:
            if self._local_dp is not None:
                private = self._local_dp.fit(adapter, data.x, data.y, local, state)
                state = replace(state, stages={**state.stages, **private.state})
                num_examples, num_steps, loss = private.num_examples, private.num_steps, private.loss
                fit_metrics = dict(private.metrics)
            else:
                if self._local_head is not None:
                    result = self._local_head.fit(adapter, data.x, data.y, local)
                else:
                    result = adapter.fit(data.x, data.y, local, control=correction)
                num_examples, num_steps, loss = result.num_examples, result.num_steps, result.loss
                fit_metrics = dict(result.metrics)
        train_s = time.perf_counter() - start
        new_weights = adapter.get_weights()
        if not np.isfinite(new_weights).all():
            raise DivergedUpdateError(task.client_id)
        delta = (new_weights - start_weights).astype(np.float32)
        head = None
        if self._local_head is not None:
            head = new_weights[self._local_head.head]
            delta[self._local_head.head] = 0.0
        stages = dict(state.stages)
        ctx = UplinkContext(
            adapter.layout, task.client_id, settings.codec_seed, settings.codec, mask, settings.dp_clip
        )
        encoded = self._chain.encode(delta, ctx, stages)
        payloads = [encoded.payload]
        metrics = dict(encoded.metrics)
        new_control = state.control
        if server_control is not None and c_i is not None:
            new_control = client_control_update(
                c_i, server_control, start_weights, new_weights, num_steps, self._train.lr
            )
            spec = settings.codec if settings.codec is not None else self._config.codec
            payloads.append(encode_frame(spec, new_control - c_i, settings.codec_seed ^ 1))
        personal = state.personal
        if self._ditto is not None:
            config = replace(local, seed=settings.personal_seed)
            personal = self._ditto.update(adapter, data.x, data.y, state.personal, received, config)
        metrics.update(fit_metrics)
        reply = Reply(
            task.round, task.client_id, tuple(payloads), num_examples, num_steps, loss, train_s, metrics
        )
        kept = replace(
            state,
            stages=stages,
            control=new_control,
            head=head if head is not None else state.head,
            personal=personal,
        )
        return reply, kept


def _build_adapter(config: FLConfig, data_for: Callable[[int], Dataset]) -> ModelAdapter:
    """The run's model, built from its seed, so every client starts from the server's initial weights."""
    sample = data_for(0)
    return make_adapter(config.backend, config.model, sample.in_features, sample.n_classes, config.seed)
