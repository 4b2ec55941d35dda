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
    from fedcore.personalize.rounds import LocalHead


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
    codec: str | None = None  # this round's uplink codec under adaptive compression; None: the run's codec
    head: Vector | None = None  # local-head runs: this client's own head from its last round
    personal: Vector | None = None  # Ditto in rounds: this client's personal model from its last round
    personal_seed: int = 0  # Ditto in rounds: seeds the personal model's epochs


class DivergedUpdateError(ValueError):
    """Local training left non-finite weights: the update cannot be encoded and must not be averaged."""

    def __init__(self, client_id: int) -> None:
        super().__init__(f"client {client_id}: local training produced non-finite weights (diverged)")
        self.client_id = client_id


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
    head: Vector | None = None  # local-head runs: the head this client keeps; never part of `delta`


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
    local_head: LocalHead | None = None,
) -> ClientUpdate:
    """Delta = new - received weights, encoded; `server_control` makes this a SCAFFOLD client (option II).

    With a `mask` only the masked coordinates of the delta travel; with `task.compressor`, PowerSGD's factors.
    With a `local_head` the client trains FedRep-style from the received body and its own head, keeps the
    new head and zeroes it in the delta (the engine's mask is then the body).
    """
    c_i = None
    correction = None
    if server_control is not None:
        c_i = task.control if task.control is not None else np.zeros_like(server_control)
        correction = (server_control - c_i).astype(np.float32)
    if local_head is not None:
        weights = local_head.with_head(weights, task.head)
    adapter.set_weights(weights)
    start = time.perf_counter()
    if y.size:
        local = replace(train, seed=task.train_seed, epochs=task.epochs or train.epochs)
        if local_head is not None:
            result = local_head.fit(adapter, x, y, local)
        else:
            result = adapter.fit(x, y, local, control=correction)
        num_examples, num_steps, loss = result.num_examples, result.num_steps, result.loss
    else:
        num_examples, num_steps, loss = 0, 0, 0.0
    train_s = time.perf_counter() - start
    new_weights = adapter.get_weights()
    if not np.isfinite(new_weights).all():
        raise DivergedUpdateError(task.client_id)
    delta = (new_weights - weights).astype(np.float32)
    head = None
    if local_head is not None:
        head = new_weights[local_head.head]
        delta[local_head.head] = 0.0
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
        head=head,
    )


def _encode_delta(
    delta: Vector, task: ClientTask, encoder: Encoder, mask: Mask | None
) -> tuple[Payload, Vector | None]:
    """(payload, new error-feedback residual) for whichever way this client uploads."""
    if task.compressor is not None:
        return task.compressor.compress(delta), None
    if mask is not None:
        return _encode_share(delta, task, encoder, mask)
    return encoder.encode(delta, task.codec_seed, task.residual)


def _encode_share(
    delta: Vector, task: ClientTask, encoder: Encoder, mask: Mask
) -> tuple[Payload, Vector | None]:
    """Partial sharing: the masked share travels; with error feedback all that did not arrive waits.

    The new residual holds the unshared coordinates of delta + old residual in full and, on the shared
    ones, what the codec lost (zero when the share goes raw).
    """
    if not encoder.error_feedback:
        return encoder.encode(mask.extract(delta), task.codec_seed)
    owed = delta if task.residual is None else (delta + task.residual).astype(np.float32)
    share = mask.extract(owed)
    payload, share_lost = encoder.encode(share, task.codec_seed)
    left = owed.copy()
    mask.scatter(share_lost if share_lost is not None else np.zeros_like(share), left)
    return payload, left
