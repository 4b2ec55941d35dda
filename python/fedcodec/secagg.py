"""Secure-aggregation kernels in Rust: X25519 + HKDF keys, Shamir shares, AES-CTR or ChaCha20 masks, Z_2^b.

Thin names over `fedcodec._fedcodec`; the SecAgg+ protocol itself is `fedcore.secure`.
"""

from fedcodec._fedcodec import secagg_add_packed as add_packed
from fedcodec._fedcodec import secagg_agree as agree
from fedcodec._fedcodec import secagg_agree_many as agree_many
from fedcodec._fedcodec import secagg_apply_masks as apply_masks
from fedcodec._fedcodec import secagg_derive_scalar as derive_scalar
from fedcodec._fedcodec import secagg_interpolate as interpolate
from fedcodec._fedcodec import secagg_key_faults as key_faults
from fedcodec._fedcodec import secagg_mask as mask
from fedcodec._fedcodec import secagg_mask_stream as mask_stream
from fedcodec._fedcodec import secagg_open as open_sealed
from fedcodec._fedcodec import secagg_pack as pack
from fedcodec._fedcodec import secagg_prgs as prgs
from fedcodec._fedcodec import secagg_public_key as public_key
from fedcodec._fedcodec import secagg_quantize as quantize
from fedcodec._fedcodec import secagg_quantize_mask as quantize_mask
from fedcodec._fedcodec import secagg_seal as seal
from fedcodec._fedcodec import secagg_share as share
from fedcodec._fedcodec import secagg_unpack as unpack

__all__ = [
    "add_packed",
    "agree",
    "agree_many",
    "apply_masks",
    "derive_scalar",
    "interpolate",
    "key_faults",
    "mask",
    "mask_stream",
    "open_sealed",
    "pack",
    "prgs",
    "public_key",
    "quantize",
    "quantize_mask",
    "seal",
    "share",
    "unpack",
]
