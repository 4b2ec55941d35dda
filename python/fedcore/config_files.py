"""Config files: TOML or YAML, one schema; a typo names the closest valid key; the resolved config as TOML."""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fedcore.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib as tomllib
else:  # pragma: no cover - exercised by `make test-oldest-python`
    import tomli as tomllib

YAML_SUFFIXES = (".yaml", ".yml")


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """TOML text to a dict; a syntax error names `source` and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The top-level table of a .toml, .yaml or .yml file; every failure names the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--config {path}: is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc})") from None
    if path.suffix.lower() not in YAML_SUFFIXES:
        return parse_toml(text, str(path))
    import yaml

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise UsageError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"{path}: a config file holds `key: value` lines, got a {type(loaded).__name__}")
    return {str(k): v for k, v in loaded.items()}


def check_keys(keys: Iterable[str], valid: Iterable[str], source: str) -> None:
    """Unknown keys are errors that name the key and, where there is one, the closest valid key."""
    choices = sorted(valid)
    for key in sorted(keys):
        if key in choices:
            continue
        close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(choices)}"
        raise UsageError(f"{source}: unknown key {key!r}{hint}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def to_toml(values: Mapping[str, Any], header: str = "") -> str:
    """Flat key = value TOML; a None (TOML has no null) is written as a comment, so it stays unset."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in values.items():
        lines.append(f"# {key} = (unset)" if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
