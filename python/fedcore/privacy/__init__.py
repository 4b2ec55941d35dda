"""Differential privacy: user-level DP-FedAvg (fixed or adaptive clip), example-level DP-SGD, accounting."""

from fedcore.privacy.accountant import Accountant, Sampling, calibrate_noise, default_accountant, round_event
from fedcore.privacy.adaptive import AdaptiveClipping, AdaptiveClipState, update_noise_multiplier
from fedcore.privacy.central import CentralDP, add_gaussian_noise, clip_update
from fedcore.privacy.distributed import SkellamShares
from fedcore.privacy.spec import DPSpec

__all__ = [
    "Accountant",
    "AdaptiveClipState",
    "AdaptiveClipping",
    "CentralDP",
    "DPSpec",
    "Sampling",
    "SkellamShares",
    "add_gaussian_noise",
    "calibrate_noise",
    "clip_update",
    "default_accountant",
    "round_event",
    "update_noise_multiplier",
]
