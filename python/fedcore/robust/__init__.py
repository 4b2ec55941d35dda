"""Byzantine robustness: robust aggregators and pre-aggregators, attacks, and suspicion scores.

All pure functions or frozen dataclasses over one round's K x d float32 updates; `parse` turns a spec
such as `bucket:2+trimmed:0.2` into a callable rule, `attacks.parse` does the same for attacks.
"""

from fedcore.robust import attacks, detect
from fedcore.robust.aggregators import (
    Aggregator,
    Bulyan,
    CenteredClip,
    GeoMed,
    Krum,
    Mean,
    Median,
    MultiKrum,
    NormBound,
    TrimmedMean,
)
from fedcore.robust.detect import (
    RoundSuspicion,
    SuspectTracker,
    distance_scores,
    krum_scores,
    sign_disagreement,
    suspicion_scores,
)
from fedcore.robust.preagg import Bucketing, NearestNeighborMixing, PreAggregator
from fedcore.robust.registry import Robust, parse

__all__ = [
    "Aggregator",
    "Bucketing",
    "Bulyan",
    "CenteredClip",
    "GeoMed",
    "Krum",
    "Mean",
    "Median",
    "MultiKrum",
    "NearestNeighborMixing",
    "NormBound",
    "PreAggregator",
    "Robust",
    "RoundSuspicion",
    "SuspectTracker",
    "TrimmedMean",
    "attacks",
    "detect",
    "distance_scores",
    "krum_scores",
    "parse",
    "sign_disagreement",
    "suspicion_scores",
]
