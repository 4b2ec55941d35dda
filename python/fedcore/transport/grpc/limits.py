"""Message size limits from the model's size and the uplink codec: no peer makes the other allocate more."""

from __future__ import annotations

from dataclasses import dataclass

from fedcore.compression import CodecSpec, normalise_spec

HEADROOM = 1 << 20  # headers, settings JSON, a partial-sharing mask's description
FRAME_HEADER = 64 << 10  # a fedcodec frame's header and per-chunk metadata, generously
DEFAULT_CHUNK = 4 << 20
MAX_PAYLOADS = 2  # the update, then SCAFFOLD's control delta

# HTTP/2 flow control sized for model-sized messages: a 16 MiB stream window and the largest frame
# HTTP/2 allows, so a 4 MB task crosses loopback in a few frames instead of waiting on 64 KiB window
# updates (raw 4 MB unary call on a busy 2-core machine: 29 ms with gRPC's defaults, 11 ms with these).
HTTP2_TUNING: tuple[tuple[str, int], ...] = (
    ("grpc.http2.lookahead_bytes", 16 << 20),
    ("grpc.http2.max_frame_size", (1 << 24) - 1),
)


@dataclass(frozen=True)
class Limits:
    """Bytes the server sends in one task, accepts in one reply's frames, and in one upload chunk."""

    max_message_bytes: int
    max_upload_bytes: int
    chunk_bytes: int = DEFAULT_CHUNK

    def __post_init__(self) -> None:
        if min(self.max_message_bytes, self.max_upload_bytes, self.chunk_bytes) < 1:
            raise ValueError("limits must be positive")

    @classmethod
    def for_model(
        cls, num_params: int, codec: CodecSpec | str | None = None, chunk_bytes: int = DEFAULT_CHUNK
    ) -> Limits:
        """A task: two float32 vectors (model, SCAFFOLD control) + headroom; a reply: two codec frames.

        A codec's frame is bounded by encoding a probe vector of the model's size (top-k at a large
        fraction or a chain can exceed float32 size); never less than the lossless float32 frame.
        """
        if num_params < 1:
            raise ValueError(f"num_params must be >= 1, got {num_params}")
        float32 = 4 * num_params + FRAME_HEADER
        frame = max(float32, _probe_frame_bytes(num_params, codec) + FRAME_HEADER)
        return cls(2 * float32 + HEADROOM, MAX_PAYLOADS * frame, chunk_bytes)

    @property
    def grpc_receive_bytes(self) -> int:
        """The server's gRPC receive limit: one upload chunk (or a header) and its framing."""
        return self.chunk_bytes + HEADROOM


def _probe_frame_bytes(num_params: int, codec: CodecSpec | str | None) -> int:
    spec = normalise_spec(codec)
    if spec is None:
        return 0
    import numpy as np

    import fedcodec

    probe = np.random.default_rng(0).standard_normal(num_params, dtype=np.float32)
    return len(fedcodec.from_spec(spec).encode(probe, seed=0))
