"""What `fedcore sim --help` says beyond the flags: defaults, the codec grammar, the TOML-only keys."""

from __future__ import annotations

import dataclasses
from typing import Any

from fedcore.config import FLConfig

CODEC_GRAMMAR = """\
codec specs (--codec, --downlink-codec, --adaptive-ladder):
  SPEC  := STAGE ( "+" STAGE )*        stages apply left to right, e.g. topk:0.01+quant:8
  STAGE := none | f16 | bf16 | sign | quant:BITS | qsgd:LEVELS | eden:BITS
         | topk:FRACTION | randk:FRACTION           FRACTION in (0, 1]
partial sharing (--partial): random:F | topk:F | gradient:F | structured:F | fixed:MASK.npy
  (MASK.npy holds one bool or 0/1 entry per model weight)"""

# Config keys with no flag: set them in the --config file. One line each, said in the help epilog.
TOML_ONLY: dict[str, str] = {
    "weight_decay": "client L2 weight decay",
    "server_beta1": "first-moment decay of fedadam / fedyogi",
    "server_beta2": "second-moment decay of fedadam / fedyogi / fedadagrad",
    "server_tau": "adaptivity (epsilon) of the server optimizers",
    "poc_candidates": "candidates power-of-choice samples before keeping the lossiest",
    "min_battery": "availability selection: least battery percent to take part",
    "min_bandwidth_mbps": "availability selection: least uplink bandwidth to take part",
    "test_fraction": "share of the data held out as the server's central test set",
}


def _default(name: str) -> Any:
    """A field's default as a user types it (a spec default is built, then printed as its text)."""
    field = next(f for f in dataclasses.fields(FLConfig) if f.name == name)
    if field.default_factory is not dataclasses.MISSING:
        return str(field.default_factory())
    return None if field.default is dataclasses.MISSING else field.default


def with_default(text: str, field: str) -> str:
    """The help line plus the FLConfig default, unless the line already says what the default means."""
    default = _default(field)
    if default is None or "default" in text:
        return text
    shown = ("on" if default else "off") if isinstance(default, bool) else str(default)
    return f"{text} (default: {shown})"


def epilog() -> str:
    """The codec grammar, then every config key that only a --config file can set, with its default."""
    width = max(len(name) for name in TOML_ONLY)
    keys = "\n".join(
        f"  {name:<{width}}  {text} (default: {_default(name)})" for name, text in TOML_ONLY.items()
    )
    return (
        f"{CODEC_GRAMMAR}\n\n"
        f"TOML-only keys (no flag; set them in the --config file, TOML or YAML):\n{keys}\n\n"
        "Every flag is also a config key (--per-round = per_round); flags override the file."
    )
