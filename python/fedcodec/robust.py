"""The Rust kernels of Byzantine-robust aggregation over a K x d float32 matrix (one row per client).

fedcore.robust builds the aggregators on these; they are exposed for benchmarks and for new rules.
"""

from fedcodec._fedcodec import (
    bulyan_coordinates,
    bulyan_select,
    centered_clip,
    coordinate_median,
    geometric_median,
    krum_scores,
    krum_select,
    mix_rows,
    pairwise_sq_dists,
    row_combination,
    sq_dists_to,
    trimmed_mean,
)

__all__ = [
    "bulyan_coordinates",
    "bulyan_select",
    "centered_clip",
    "coordinate_median",
    "geometric_median",
    "krum_scores",
    "krum_select",
    "mix_rows",
    "pairwise_sq_dists",
    "row_combination",
    "sq_dists_to",
    "trimmed_mean",
]
