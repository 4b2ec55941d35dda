"""One client's round: start from the global weights, train, send the delta (and SCAFFOLD's control delta)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import ModelAdapter, TrainConfig
from fedcore.compression import Encoder, Payload, Vector, payload_nbytes
from fedcore.powersgd import PowerSGD
from fedcore.strategies.scaffold import client_control_update

if TYPE_CHECKING:  # masks import the fedcodec extension; runs without partial sharing need not
    from fedcore.partial import Mask


@dataclass(frozen=True)
class ClientTask:
    """Per-client inputs of one round; residual, control and compressor are the client's own state."""

    client_id: int
    train_seed: int
    codec_seed: int
    residual: Vector | None = None
    control: Vector | None = None
    epochs: int | None = None  # a straggler's own local epochs; None: the round's setting
    weights: Vector | None = None  # this client's own model under downlink sync; None: the broadcast
    compressor: PowerSGD | None = None  # replaces the codec; its warm start and residual live on


@dataclass(frozen=True)
class ClientUpdate:
    """What one client sends (payloads) plus the state it hands back to the engine (residual, control)."""

    client_id: int
    delta: Payload
    control_delta: Payload | None
    num_examples: int
    num_steps: int
    loss: float
    uplink_bytes: int
    residual: Vector | None
    control: Vector | None
    train_s: float
    compressor: PowerSGD | None = None


def run_client(
    adapter: ModelAdapter,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    weights: Vector,
    train: TrainConfig,
    task: ClientTask,
    encoder: Encoder,
    control_encoder: Encoder,
    server_control: Vector | None = None,
    mask: Mask | None = None,
) -> ClientUpdate:
    """Delta = new - received weights, encoded; `server_control` makes this a SCAFFOLD client (option II).

    With a `mask` only the masked coordinates of the delta travel; with `task.compressor`, PowerSGD's factors.
    """
    c_i = None
    correction = None
    if server_control is not None:
        c_i = task.control if task.control is not None else np.zeros_like(server_control)
        correction = (server_control - c_i).astype(np.float32)
    adapter.set_weights(weights)
    start = time.perf_counter()
    if y.size:
        local = replace(train, seed=task.train_seed, epochs=task.epochs or train.epochs)
        result = adapter.fit(x, y, local, control=correction)
        num_examples, num_steps, loss = result.num_examples, result.num_steps, result.loss
    else:
        num_examples, num_steps, loss = 0, 0, 0.0
    train_s = time.perf_counter() - start
    new_weights = adapter.get_weights()
    delta = (new_weights - weights).astype(np.float32)
    payload, residual = _encode_delta(delta, task, encoder, mask)
    nbytes = payload_nbytes(payload)
    control_payload = None
    new_control = None
    if server_control is not None and c_i is not None:
        new_control = client_control_update(c_i, server_control, weights, new_weights, num_steps, train.lr)
        control_payload, _ = control_encoder.encode(new_control - c_i, task.codec_seed ^ 1)
        nbytes += payload_nbytes(control_payload)
    return ClientUpdate(
        client_id=task.client_id,
        delta=payload,
        control_delta=control_payload,
        num_examples=num_examples,
        num_steps=num_steps,
        loss=loss,
        uplink_bytes=nbytes,
        residual=residual,
        control=new_control,
        train_s=train_s,
        compressor=task.compressor,
    )


def _encode_delta(
    delta: Vector, task: ClientTask, encoder: Encoder, mask: Mask | None
) -> tuple[Payload, Vector | None]:
    """(payload, new error-feedback residual) for whichever way this client uploads."""
    if task.compressor is not None:
        return task.compressor.compress(delta), None
    if mask is not None:
        return encoder.encode(mask.extract(delta), task.codec_seed)
    return encoder.encode(delta, task.codec_seed, task.residual)
