"""The client half: a Flower mod that sends the trained update as one fedcodec frame, not float arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from fedcore.compression import CodecSpec, normalise_spec
from fedcore.flower.frames import (
    CODEC_KEY,
    ENABLED_KEY,
    FRAME_KEY,
    MASK_KEY,
    REPLY_RECORD,
    RESIDUAL_RECORD,
    ROUND_KEY,
    ArraysLayout,
    codec_seed,
    encode_update,
)
from fedcore.flower.records import to_numpy, to_record
from fedcore.uplink import ClientStates, mask_from_bytes


@dataclass(frozen=True)
class FedcodecMod:
    """`ClientApp(mods=[FedcodecMod(...)])`: train replies carry a frame of (trained - received) weights.

    It acts only on train messages from a server that announced it decodes (`CompressedStrategy`); any
    other message and any reply of a plain server pass through untouched. The server's codec spec, when
    it names one, wins over `codec`. With `error_feedback` the residual of what the codec dropped lives
    in `context.state`, so it follows the node across rounds as Flower keeps that state.
    """

    codec: str | None = None
    error_feedback: bool = False
    arrays_key: str = "arrays"  # the ArrayRecord the strategy sends and the ClientApp replies with
    config_key: str = "config"  # the ConfigRecord the strategy sends
    seed: int = 0  # mixed with the round and node id into each frame's codec seed

    def __post_init__(self) -> None:
        if self.codec is not None:
            CodecSpec.parse(self.codec)  # a bad spec fails when the app is built, not in round 1

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type.split(".")[0] != MessageType.TRAIN or not msg.has_content():
            return call_next(msg, context)
        config = msg.content.config_records.get(self.config_key, ConfigRecord())
        sent = msg.content.array_records.get(self.arrays_key)
        if not config.get(ENABLED_KEY) or sent is None:
            return call_next(msg, context)
        received = to_numpy(sent)  # before the app runs: it may load (and alter) the record in place
        reply = call_next(msg, context)
        if reply.has_error() or self.arrays_key not in reply.content.array_records:
            return reply
        trained = to_numpy(reply.content.array_records[self.arrays_key])
        layout = ArraysLayout.of(received)
        delta = (layout.flatten(trained) - layout.flatten(received)).astype(np.float32)
        round_value, announced, mask_bytes = (
            config.get(ROUND_KEY),
            config.get(CODEC_KEY),
            config.get(MASK_KEY),
        )
        server_round = round_value if isinstance(round_value, int) else 0
        states = self._load_states(context, layout.floats.size)
        frame = encode_update(
            delta,
            layout.floats,
            codec=normalise_spec(announced if isinstance(announced, str) else self.codec),
            seed=codec_seed(self.seed, server_round, context.node_id),
            server_round=server_round,
            mask=mask_from_bytes(mask_bytes) if isinstance(mask_bytes, bytes) else None,
            states=states,
            error_feedback=self.error_feedback,
        )
        self._save_states(context, states)
        records = {k: v for k, v in reply.content.items() if k != self.arrays_key}
        if layout.passthrough:
            records[self.arrays_key] = to_record({n: trained[n] for n in layout.passthrough})
        records[REPLY_RECORD] = ConfigRecord({FRAME_KEY: frame})
        reply.content = RecordDict(records)
        return reply

    def _load_states(self, context: Context, size: int) -> ClientStates:
        """The stages' state this node kept; a residual of another model's size is dropped."""
        if not self.error_feedback or RESIDUAL_RECORD not in context.state.array_records:
            return {}
        residual = context.state.array_records[RESIDUAL_RECORD]["residual"].numpy()
        return {"residual": residual.astype(np.float32)} if residual.shape == (size,) else {}

    def _save_states(self, context: Context, states: ClientStates) -> None:
        if self.error_feedback and "residual" in states:
            residual = np.ascontiguousarray(states["residual"], dtype=np.float32)
            context.state[RESIDUAL_RECORD] = ArrayRecord({"residual": Array(residual)})


def fedcodec_mod(codec: str | None = None, *, error_feedback: bool = False, seed: int = 0) -> FedcodecMod:
    """The mod for `ClientApp(mods=[...])`; see `FedcodecMod` for the record keys it reads."""
    return FedcodecMod(codec, error_feedback=error_feedback, seed=seed)
