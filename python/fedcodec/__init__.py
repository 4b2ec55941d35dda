"""fedcodec: compress federated-learning updates 100x and more, in Rust, with a checked wire format."""

from fedcodec import kernels
from fedcodec._fedcodec import (
    DEFAULT_MAX_ELEMENTS,
    FRAME_VERSION,
    Accumulator,
    ChecksumError,
    CodecError,
    FrameError,
)
from fedcodec.codecs import (
    QSGD,
    Codec,
    Eden,
    Identity,
    Pipeline,
    Quantize,
    RandK,
    Sign,
    TopK,
    from_spec,
)
from fedcodec.feedback import ErrorFeedback
from fedcodec.frames import FrameInfo, decode, inspect

__all__ = [
    "DEFAULT_MAX_ELEMENTS",
    "FRAME_VERSION",
    "QSGD",
    "Accumulator",
    "ChecksumError",
    "Codec",
    "CodecError",
    "Eden",
    "ErrorFeedback",
    "FrameError",
    "FrameInfo",
    "Identity",
    "Pipeline",
    "Quantize",
    "RandK",
    "Sign",
    "TopK",
    "decode",
    "from_spec",
    "inspect",
    "kernels",
]
__version__ = "0.1.0"
