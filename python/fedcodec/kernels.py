"""The Rust kernels on their own, for benchmarks and for building new codecs (partial sharing)."""

from fedcodec._fedcodec import (
    bitmap_extract,
    bitmap_scatter_add,
    fwht,
    mask_bitmap,
    mask_count,
    mask_extract,
    mask_scatter_add,
    pack_bits,
    topk_indices,
    unpack_bits,
)

__all__ = [
    "bitmap_extract",
    "bitmap_scatter_add",
    "fwht",
    "mask_bitmap",
    "mask_count",
    "mask_extract",
    "mask_scatter_add",
    "pack_bits",
    "topk_indices",
    "unpack_bits",
]
