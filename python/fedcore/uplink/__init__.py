"""Uplink stages: clip, error feedback, partial mask, PowerSGD or codec, composed as one chain."""

from fedcore.uplink.base import ClientStates, Encoded, Stage, Update, UplinkContext
from fedcore.uplink.chain import STAGE_BUILDERS, UplinkChain
from fedcore.uplink.codec import decode_frame, encode_frame
from fedcore.uplink.partial import mask_from_bytes, mask_to_bytes

__all__ = [
    "STAGE_BUILDERS",
    "ClientStates",
    "Encoded",
    "Stage",
    "Update",
    "UplinkChain",
    "UplinkContext",
    "decode_frame",
    "encode_frame",
    "mask_from_bytes",
    "mask_to_bytes",
]
