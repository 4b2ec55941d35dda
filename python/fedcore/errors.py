"""Errors a user can act on: one line on stderr that names the flag they typed, never a traceback."""

from __future__ import annotations

import difflib
import importlib.util
import re
from collections.abc import Iterable

USAGE_EXIT = 2  # what argparse returns for a bad command line; fedcore uses it for every fixable input


class UsageError(ValueError):
    """Bad input the user can fix (a flag, a file, a folder); the CLI prints it as one line and exits 2."""


def flag(field: str) -> str:
    """The command-line spelling of a config field: per_round -> --per-round."""
    return "--" + field.replace("_", "-")


# Fields whose flag is not the field name with dashes.
_FLAG_ALIASES = {"adaptive_deadline_s": "--adaptive"}


def flag_for(field: str) -> str:
    return _FLAG_ALIASES.get(field, flag(field))


def name_flags(message: str, fields: Iterable[str]) -> str:
    """Rewrite config field names in a validation message to the flags the user typed.

    Multi-word names (per_round) are rewritten wherever they stand; one-word names (rounds) only where a
    value or verdict follows ("rounds must be >= 1", "exceed clients (10)", "unknown strategy 'x'"), so prose
    keeps its words. A message that starts with a flag is left as it is.
    """
    if message.startswith("--"):
        return message  # already says which flag; the rest is the library's own words
    names = sorted(fields, key=len, reverse=True)
    multi = [n for n in names if "_" in n]
    single = [n for n in names if "_" not in n]
    if multi:
        message = re.sub(
            r"(?<![\w'-])(" + "|".join(map(re.escape, multi)) + r")(?![\w'-])",
            lambda m: flag_for(m.group(1)),
            message,
        )
    if single:
        message = re.sub(
            r"(?<![\w-])(" + "|".join(map(re.escape, single)) + r")(?= must| \(|=| needs|:| ')",
            lambda m: flag_for(m.group(1)),
            message,
        )
    return message


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean X?' for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def suggest_choice(message: str) -> str:
    """A did-you-mean after "unknown NAME 'x'; choose from a, b" and argparse's "invalid choice" messages."""
    if "did you mean" in message:
        return message
    match = re.search(r"unknown \S+ '([^']+)'; choose from ([^;]+)$", message) or re.search(
        r"invalid choice: '([^']+)' \(choose from ([^)]*)\)", message
    )
    if match is None:
        return message
    choices = [c.strip(" '") for c in match.group(2).split(",")]
    return message + did_you_mean(match.group(1), choices)


def one_line(message: object) -> str:
    """A message on one line: later lines (a worker's traceback) are dropped, whitespace collapsed."""
    text = str(message).strip()
    first = text.splitlines()[0] if text else "unknown error"
    return " ".join(first.split())


_BACKEND_EXTRAS = {
    "torch": ("torch", 'pip install "fedcore[torch]"'),
    "mlx": ("mlx", 'pip install "fedcore[mlx]"'),
    "sklearn": ("sklearn", "pip install scikit-learn"),
}


def check_backend_installed(backend: str) -> None:
    """Fail before any work when the backend's package is missing, with the command that installs it."""
    module, install = _BACKEND_EXTRAS[backend]
    if importlib.util.find_spec(module) is None:
        other = "" if backend == "sklearn" else " or run with --backend sklearn"
        raise UsageError(f"--backend {backend} needs the {module} package: {install}{other}")
