"""How typed specs print their numbers, so `parse(str(spec)) == spec` and the text stays short."""

from __future__ import annotations


def format_number(value: float) -> str:
    """The shortest text that reads back as the same float: 0.5, 1e-05, and 2 rather than 2.0."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def parse_number(text: str, what: str) -> float:
    """A float from spec text, or a ValueError that names what the number was for."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number") from None
