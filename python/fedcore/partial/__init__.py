"""Partial model sharing (PSFed): send a changing subset of the flat model each round."""

from fedcore.partial.mask import SEEDED_DESCRIPTOR_BYTES, Mask
from fedcore.partial.selectors import (
    PARTIAL_NAMES,
    FixedMaskSelector,
    GradientMaskSelector,
    MaskSelector,
    PartialSpec,
    RandomMaskSelector,
    StructuredMaskSelector,
    TopKMagnitudeSelector,
    parse_partial,
    round_seed,
)

__all__ = [
    "PARTIAL_NAMES",
    "SEEDED_DESCRIPTOR_BYTES",
    "FixedMaskSelector",
    "GradientMaskSelector",
    "Mask",
    "MaskSelector",
    "PartialSpec",
    "RandomMaskSelector",
    "StructuredMaskSelector",
    "TopKMagnitudeSelector",
    "parse_partial",
    "round_seed",
]
