"""A run's folder: never overwritten by accident, never left holding an empty rounds.jsonl after a failure."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedcore.errors import UsageError

# What a run writes; --overwrite removes exactly these, so other files a user keeps there survive.
RUN_FILES = (
    "rounds.jsonl",
    "summary.json",
    "personalization.jsonl",
    "audit.jsonl",
    "checkpoint.pkl",
    "report.png",
)


def check_out(out: Path, overwrite: bool = False, resume: bool = False) -> None:
    """Refuse a file, or a folder that already holds something, unless --overwrite (or --resume) says so."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for rounds.jsonl and summary.json")
    if not out.is_dir() or resume:
        return
    held = sorted(p.name for p in out.iterdir())
    if not held:
        return
    if not overwrite:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise UsageError(
            f"--out {out} already holds {shown}; "
            "pass --overwrite to replace that run, or choose another --out"
        )
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


@contextmanager
def cleaned_on_failure(out: Path) -> Iterator[None]:
    """If the run fails before its first round, remove the empty rounds.jsonl (and the folder it made)."""
    existed = out.exists()
    try:
        yield
    except BaseException:
        rounds = out / "rounds.jsonl"
        if rounds.is_file() and rounds.stat().st_size == 0:
            rounds.unlink()
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
