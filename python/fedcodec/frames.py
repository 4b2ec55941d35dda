"""Reading frames without a codec object: decode and inspect."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcodec import _fedcodec
from fedcodec._fedcodec import DEFAULT_MAX_ELEMENTS

FrameLike = bytes | bytearray | memoryview


def _as_bytes(frame: FrameLike) -> bytes:
    return frame if isinstance(frame, bytes) else bytes(frame)


def decode(
    frame: FrameLike, max_elements: int = DEFAULT_MAX_ELEMENTS, *, out: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """Decodes any fedcodec frame; sizes are checked against `max_elements` before allocating.

    With `out` (a writeable C-contiguous float32 array of the frame's shape) the values are written
    over it and it is returned: nothing is allocated, which makes repeated decodes several times
    faster. A bad frame or array is refused before `out` is touched; a payload refused after the
    checks (a forged frame) leaves `out` zeroed.
    """
    return _fedcodec.decode(_as_bytes(frame), max_elements, out)


@dataclass(frozen=True)
class FrameInfo:
    """What a frame holds, read from its header."""

    spec: str
    shape: tuple[int, ...]
    n: int
    nbytes: int
    version: int

    @property
    def ratio(self) -> float:
        """float32 bytes of the array over the frame's bytes."""
        return 4 * self.n / self.nbytes

    @property
    def bits_per_element(self) -> float:
        return 8 * self.nbytes / self.n


def inspect(frame: FrameLike, max_elements: int = DEFAULT_MAX_ELEMENTS) -> FrameInfo:
    """Checks a frame (checksum included) and reports its codec, shape and size."""
    info = _fedcodec.inspect(_as_bytes(frame), max_elements)
    return FrameInfo(
        spec=str(info["spec"]),
        shape=tuple(int(d) for d in info["shape"]),
        n=int(info["n"]),
        nbytes=int(info["nbytes"]),
        version=int(info["version"]),
    )
