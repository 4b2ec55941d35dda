"""Parse `--personalize` specs once, so the config rejects a bad one before any training starts."""

from __future__ import annotations

from dataclasses import dataclass

from fedcore.spec_text import format_number

PERSONALIZE_SPECS = "finetune:EPOCHS | fedrep[:HEAD_EPOCHS[,BODY_EPOCHS]] | ditto:LAMBDA"
METHODS = ("finetune", "fedrep", "ditto")


@dataclass(frozen=True)
class PersonalizeSpec:
    """One method and its numbers; `epochs` None means the run's local epochs."""

    method: str
    epochs: int | None = None
    body_epochs: int = 0  # FedRep only: body epochs after the head ones (0: the body stays global)
    lam: float = 0.0  # Ditto only: pull lambda/2 * ||v - w_global||^2

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"personalization epochs must be >= 1, got {self.epochs}")
        if self.body_epochs < 0 or (self.body_epochs and self.method != "fedrep"):
            raise ValueError(f"body_epochs must be >= 0 and only set for fedrep, got {self.body_epochs}")
        if self.method == "ditto" and not self.lam > 0.0:
            raise ValueError(f"ditto lambda must be > 0, got {self.lam}")
        if self.method != "ditto" and self.lam != 0.0:
            raise ValueError(f"lambda is Ditto's; {self.method} takes none")

    @classmethod
    def parse(cls, text: str) -> PersonalizeSpec:
        """See `parse_personalize`."""
        return parse_personalize(text)

    def __str__(self) -> str:
        if self.method == "finetune":
            return f"finetune:{self.epochs}"
        if self.method == "ditto":
            return f"ditto:{format_number(self.lam)}"
        if self.epochs is None:
            return "fedrep"
        return f"fedrep:{self.epochs}" + (f",{self.body_epochs}" if self.body_epochs else "")


def parse_personalize(text: str) -> PersonalizeSpec:
    """`finetune:5`, `fedrep`, `fedrep:3`, `fedrep:3,1` or `ditto:0.1`; the ValueError lists the forms."""
    method, _, arg = text.strip().partition(":")
    try:
        if method == "finetune" and arg:
            return PersonalizeSpec("finetune", epochs=_count(arg))
        if method == "fedrep":
            if not arg:
                return PersonalizeSpec("fedrep")
            head, _, body = arg.partition(",")
            return PersonalizeSpec("fedrep", epochs=_count(head), body_epochs=_count(body) if body else 0)
        if method == "ditto" and arg:
            return PersonalizeSpec("ditto", lam=float(arg))
    except ValueError as exc:
        raise ValueError(f"bad personalization spec {text!r} ({exc}); expected {PERSONALIZE_SPECS}") from None
    raise ValueError(f"bad personalization spec {text!r}; expected {PERSONALIZE_SPECS}")


def _count(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)
