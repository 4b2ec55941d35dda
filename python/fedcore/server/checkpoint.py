"""Checkpoints: the driver's whole state after each completed round, written atomically."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

from fedcore.server.driver import DriverState

CHECKPOINT_NAME = "checkpoint.pkl"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or from another run."""


def save_checkpoint(out: Path, state: DriverState, settings: dict[str, object]) -> Path:
    """Write to a temporary file, flush it to disk, then rename over the old one: never half a checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / CHECKPOINT_NAME
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=out)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"settings": settings, "state": state}, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(out: Path, settings: dict[str, object]) -> DriverState:
    """The last completed round's state; refuses a checkpoint written by a run with other settings.

    Checkpoints are pickles: only resume from a folder you wrote yourself.
    """
    path = out / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: {path} does not exist")
    try:
        with path.open("rb") as f:
            saved = pickle.load(f)
        state = saved["state"]
        before = saved["settings"]
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(state, DriverState):
        raise CheckpointError(f"{path} holds no round-driver state")
    changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
    if changed:
        raise CheckpointError(f"{path} was written by a run with other settings ({', '.join(changed)})")
    return state
