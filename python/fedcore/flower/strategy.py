"""The server half: Flower strategy wrappers that meter uplink bytes and decode fedcodec frames."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedcore.compression import CodecSpec
from fedcore.flower.frames import (
    CODEC_KEY,
    ENABLED_KEY,
    FRAME_KEY,
    MASK_KEY,
    REPLY_RECORD,
    ArraysLayout,
    Vector,
    decode_update,
)
from fedcore.flower.records import record_bytes, to_numpy, to_record, wire_bytes
from fedcore.partial import Mask, MaskSelector, parse_partial
from fedcore.uplink import mask_to_bytes

log = logging.getLogger("fedcore.flower")

UPLINK_BYTES = "uplink-bytes"  # the round's replies as Flower's message_size_mod counts them
UPLINK_WIRE_BYTES = "uplink-wire-bytes"  # the same replies deflated, as a SuperNode pushes them
FRAMES = "fedcodec-frames"  # replies whose frame decoded this round
DROPPED = "fedcodec-dropped"  # replies dropped because their frame did not decode


class UplinkMeter(Strategy):
    """Any Flower strategy, unchanged, whose train metrics also say how many bytes the clients sent.

    Each round's aggregated MetricRecord (Flower's `Result.train_metrics_clientapp`) gains
    `uplink-bytes` and `uplink-wire-bytes`, summed over the round's replies before anything reads them.
    """

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        contents = [m.content for m in replies if m.has_content()]
        sizes = {
            UPLINK_BYTES: sum(map(record_bytes, contents)),
            UPLINK_WIRE_BYTES: sum(map(wire_bytes, contents)),
        }
        arrays, metrics = self.strategy.aggregate_train(server_round, self._received(server_round, replies))
        metrics = MetricRecord() if metrics is None else metrics
        metrics.update(sizes)
        return arrays, metrics

    def _received(self, server_round: int, replies: list[Message]) -> list[Message]:
        """The replies the wrapped strategy aggregates; a subclass decodes them here."""
        del server_round
        return replies

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()


class CompressedStrategy(UplinkMeter):
    """`CompressedStrategy(FedAvg(...), codec="topk:0.02+quant:4")`: clients with `fedcodec_mod` send frames.

    Each round it tells the clients it decodes (and the codec and partial-sharing mask, when set), then
    turns every frame back into the client's weights (the round's global model plus the decoded update)
    before the wrapped strategy aggregates as usual. A reply whose frame does not decode is dropped with
    one log line; replies without a frame (clients without the mod) pass through unchanged.
    """

    def __init__(
        self,
        strategy: Strategy,
        codec: str | None = None,
        partial: str | MaskSelector | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(strategy)
        self.codec = None if codec is None else str(CodecSpec.parse(codec))
        self.masks = parse_partial(partial, seed) if isinstance(partial, str) else partial
        self.arrays_key: str = getattr(strategy, "arrayrecord_key", "arrays")
        self._sent: tuple[int, ArraysLayout, Vector, Mask | None] | None = None
        self._change: Vector | None = None  # the last round's global change, for gradient-led masks
        self._counts = (0, 0)  # this round's decoded and dropped frames

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        named = to_numpy(arrays)
        layout = ArraysLayout.of(named)
        weights = layout.flatten(named)
        mask = None
        if self.masks is not None:
            change = (
                self._change if self._change is not None and self._change.shape == weights.shape else None
            )
            mask = self.masks.select(server_round, weights, layout.floats, change)
        self._sent = (server_round, layout, weights, mask)
        config = ConfigRecord(dict(config))
        config[ENABLED_KEY] = True
        if self.codec is not None:
            config[CODEC_KEY] = self.codec
        if mask is not None:
            config[MASK_KEY] = mask_to_bytes(mask)
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = super().aggregate_train(server_round, replies)
        if metrics is not None:
            metrics.update({FRAMES: self._counts[0], DROPPED: self._counts[1]})
        if arrays is not None and self._sent is not None:
            _, layout, weights, _ = self._sent
            self._change = (layout.flatten(to_numpy(arrays)) - weights).astype(np.float32)
        return arrays, metrics

    def _received(self, server_round: int, replies: list[Message]) -> list[Message]:
        kept, decoded, dropped = [], 0, 0
        for msg in replies:
            if msg.has_content() and REPLY_RECORD in msg.content.config_records:
                try:
                    content = self._decoded(server_round, msg.content)
                    # the reply as received, but for its content; flwr's overloads omit this (valid) form
                    msg = Message(content=content, metadata=msg.metadata)  # type: ignore[call-overload]
                except (ValueError, KeyError, TypeError) as error:
                    log.warning("fedcodec: dropped node %d's update: %s", msg.metadata.src_node_id, error)
                    dropped += 1
                    continue
                decoded += 1
            kept.append(msg)
        self._counts = (decoded, dropped)
        return kept

    def _decoded(self, server_round: int, content: RecordDict) -> RecordDict:
        """The reply as the wrapped strategy expects it: the client's weights where the frame was."""
        if self._sent is None or self._sent[0] != server_round:
            raise ValueError(f"a frame for round {server_round}, which this strategy did not send")
        _, layout, weights, mask = self._sent
        frame = content.config_records[REPLY_RECORD][FRAME_KEY]
        if not isinstance(frame, bytes):
            raise TypeError(f"the frame is {type(frame).__name__}, not bytes")
        update = decode_update(frame, layout.floats, mask)
        passed = content.array_records.get(self.arrays_key, ArrayRecord())
        missing = [n for n in layout.passthrough if n not in passed]
        if missing:
            raise ValueError(f"the reply lacks the non-float arrays {missing}")
        others = {n: passed[n].numpy() for n in layout.passthrough}
        rebuilt = to_record(layout.rebuild((weights + update).astype(np.float32), others))
        records = {k: v for k, v in content.items() if k not in (REPLY_RECORD, self.arrays_key)}
        return RecordDict({self.arrays_key: rebuilt, **records})
