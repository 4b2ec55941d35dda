"""Error feedback: what a codec drops this round is added back before the next encode."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedcodec._fedcodec import CodecError
from fedcodec.codecs import Codec, as_float32


class ErrorFeedback:
    """Wraps a codec with one client's residual (Seide et al. 2014; Karimireddy et al. 2019)."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.residual: NDArray[np.float32] | None = None

    def encode(self, x: ArrayLike, seed: int = 0) -> bytes:
        """Encodes x + residual; the residual becomes what this frame failed to carry."""
        array = as_float32(x)
        if self.residual is None:
            self.residual = np.zeros_like(array)
        elif self.residual.shape != array.shape:
            raise CodecError(f"input shape {array.shape} differs from the residual's {self.residual.shape}")
        return self.codec._native.encode_with_feedback(array, self.residual, seed)

    def reset(self) -> None:
        self.residual = None

    @property
    def residual_norm(self) -> float:
        return 0.0 if self.residual is None else float(np.linalg.norm(self.residual))
