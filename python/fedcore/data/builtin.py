"""Built-in datasets that need no download: sklearn digits, MNIST-1D, FedProx Synthetic(alpha, beta)."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fedcore.data.dataset import Dataset

SYNTHETIC_FEATURES = 60
SYNTHETIC_CLASSES = 10


def cache_dir() -> Path:
    """`$FEDCORE_CACHE`, else `~/.cache/fedcore`."""
    configured = os.environ.get("FEDCORE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "fedcore"


DIGITS_FILE = Path(__file__).with_name("digits.npz")


def load_digits_dataset() -> Dataset:
    """The 8x8 digits (1797 samples, 64 features; UCI, as sklearn ships them), pixels scaled to [0, 1].

    Read from the 45 KB copy in this package, so a run does not import scikit-learn (~1 s) to get them.
    """
    with np.load(DIGITS_FILE) as stored:
        pixels, labels = stored["pixels"], stored["labels"]
    x = (pixels.astype(np.float32) / 16.0).astype(np.float32)
    return Dataset(x, labels.astype(np.int64), 10, "digits")


def load_mnist1d(num_samples: int = 5000, seed: int = 42, cache: Path | None = None) -> Dataset:
    """MNIST-1D (Greydanus 2020) generated locally, train and test parts pooled, cached as .npz.

    Generation (~6 s for 5000) is keyed by every generator argument, so a cached file is
    only reused for exactly the same arguments.
    """
    if num_samples < 10:
        raise ValueError(f"num_samples must be >= 10 (one per class), got {num_samples}")
    from mnist1d.data import get_dataset_args  # type: ignore[import-untyped]

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args.update(num_samples=num_samples, seed=seed)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = (cache if cache is not None else cache_dir()) / f"mnist1d-{key}.npz"
    if path.exists():
        with np.load(path) as stored:
            x, y = stored["x"], stored["y"]
    else:
        x, y = _generate_mnist1d(args)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(partial, x=x, y=y)
        os.replace(partial, path)  # atomic, so parallel workers never read half a file
    return Dataset(x.astype(np.float32), y.astype(np.int64), 10, "mnist1d")


def _generate_mnist1d(args: dict[str, object]) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """mnist1d seeds the global `random`/`np.random`; put their state back afterwards."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView  # type: ignore[import-untyped]

    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y


def synthetic(alpha: float, beta: float, num_clients: int, seed: int) -> list[Dataset]:
    """FedProx Synthetic(alpha, beta) (Li et al. 2020): one naturally non-IID dataset per client.

    alpha controls how much the clients' models differ, beta how much their inputs differ.
    Client sizes follow the reference generator: lognormal(4, 2) + 50.
    """
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be >= 0, got {alpha}, {beta}")
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    rng = np.random.default_rng(seed)
    d, k = SYNTHETIC_FEATURES, SYNTHETIC_CLASSES
    sizes = rng.lognormal(4, 2, num_clients).astype(np.int64) + 50
    model_means = rng.normal(0, alpha, num_clients)  # u_k: shared by W_k and b_k
    input_centres = rng.normal(0, beta, num_clients)  # B_k
    std = np.power(np.arange(1, d + 1, dtype=np.float64), -1.2) ** 0.5  # Sigma_jj = j^-1.2
    clients = []
    for c in range(num_clients):
        v = rng.normal(input_centres[c], 1.0, d)
        w = rng.normal(model_means[c], 1.0, (d, k))
        b = rng.normal(model_means[c], 1.0, k)
        x = v + std * rng.standard_normal((int(sizes[c]), d))
        y = np.argmax(x @ w + b, axis=1)
        clients.append(Dataset(x.astype(np.float32), y.astype(np.int64), k, f"synthetic-{c}"))
    return clients
