"""Is a codec's accuracy on digits explained by the size of its error alone?

Runs the uncompressed rows of `docs/digits_one_bit_seeds.toml` with isotropic Gaussian noise added
to every client update, scaled per update to the error energy the given codec would have left on it.
If these runs land where the codec's own runs do, the codec's structure does not matter there, only
how much noise it adds. Usage (one partition and codec per call, 10 seeds, about 2 minutes):

    .venv/bin/python docs/experiments/noise_control.py quant:1:stochastic dirichlet:0.1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

import fedcodec as fc
import fedcore.client as client
from fedcore.sim import simulate_to_dir
from fedcore.sweep.plan import load_plan

PLAN = Path(__file__).resolve().parents[1] / "digits_one_bit_seeds.toml"


def noisy_encoder(codec: fc.Codec, vnmse: list[float]) -> Any:
    """client._encode_delta, with the update replaced by update + matched Gaussian noise."""
    encode_delta = client._encode_delta

    def encode(delta: Any, task: Any, encoder: Any, mask: Any) -> Any:
        d = np.asarray(delta, np.float32)
        error = float(np.linalg.norm(fc.decode(codec.encode(d, seed=task.codec_seed)).reshape(d.shape) - d))
        vnmse.append(error**2 / max(float(d @ d), 1e-30))
        noise = np.random.default_rng([task.codec_seed, 77]).standard_normal(d.shape).astype(np.float32)
        noise *= error / float(np.linalg.norm(noise))
        return encode_delta(d + noise, task, encoder, mask)

    return encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codec", help="the codec whose error energy the noise matches, e.g. eden:1")
    parser.add_argument("partition", help="dirichlet:0.5 or dirichlet:0.1")
    parser.add_argument("--out", type=Path, default=Path("runs/noise_control"))
    args = parser.parse_args()
    vnmse: list[float] = []
    client._encode_delta = noisy_encoder(fc.from_spec(args.codec), vnmse)
    out = args.out / args.codec.replace(":", "_")
    accuracy = []
    for spec in load_plan(PLAN).runs(out):
        if spec.setting.name == "none" and spec.partition == args.partition:
            accuracy.append(float(simulate_to_dir(spec.config).summary["final_accuracy"]))
            print(f"seed {spec.seed}: final accuracy {accuracy[-1]:.4f}", flush=True)
    summary = {"codec": args.codec, "partition": args.partition, "final_accuracy": accuracy}
    print(json.dumps({**summary, "mean": float(np.mean(accuracy)), "mean_vnmse": float(np.mean(vnmse))}))


if __name__ == "__main__":
    main()
