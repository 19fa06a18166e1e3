"""The range of a numeric setting, written once and checked wherever the setting is given.

Why: a budget or a split setting reaches a run three ways: typed on the command line (text),
passed to the Python API (a Python or numpy number), or read back from `run.json`. Each way used
to have its own check, and the Python one was missing or coerced (`folds=2.5` ran 2 folds,
`max_iters=2.5` was saved and the run could never be resumed). A `NumberRule` is the one rule;
the CLI parses text with it and the API and the run context check values with it. This module
imports nothing heavy: the CLI builds its parser from it at start-up.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any


def python_number(value: Any) -> Any:
    """A numpy scalar (what scikit-learn's parameter grids hand out) as the Python number it holds,
    anything else as it is: the request is checkpointed with msgpack and the context saved as JSON,
    and both refuse numpy types. numpy is not imported for this: the CLI starts without it."""
    return value.item() if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 else value


@dataclass(frozen=True)
class NumberRule:
    """A finite number of `kind` within the given bounds (each optional)."""

    kind: type[int] | type[float]
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    below: float | None = None
    meaning: str = ""
    """What the number is, for the Python API's message (the CLI's help already says it)."""

    @property
    def wanted(self) -> str:
        """What the rule takes, e.g. "a whole number >= 1"."""
        limits = {">=": self.at_least, ">": self.above, "<=": self.at_most, "<": self.below}
        kind = "a whole number" if self.kind is int else "a number"
        return kind + " and".join(f" {op} {_plain(bound)}" for op, bound in limits.items() if bound is not None)

    def accepts(self, value: Any) -> bool:
        """Whether a Python value (not text) is such a number. True and False are not numbers here,
        and 2.5 or 2.0 is not a whole number: a whole number given as a float is a mistake to name,
        not to round."""
        value = python_number(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        number = float(value)
        return math.isfinite(number) and all(
            (
                self.at_least is None or number >= self.at_least,
                self.above is None or number > self.above,
                self.at_most is None or number <= self.at_most,
                self.below is None or number < self.below,
            )
        )

    def problem(self, name: str, value: Any) -> str | None:
        """The one line that refuses `value` for the setting `name`, or None when it is fine."""
        if self.accepts(value):
            return None
        meaning = f" ({self.meaning})" if self.meaning else ""
        return f"{name} must be {self.wanted}{meaning}, got {python_number(value)!r}"

    def parse(self, text: str) -> int | float:
        """The number typed as `text`, or ValueError("expected ..., got '...'")."""
        try:
            value: int | float = self.kind(text)
        except ValueError:
            value = math.nan
        if not self.accepts(value):
            raise ValueError(f"expected {self.wanted}, got {text!r}")
        return value


def _plain(bound: float) -> str:
    """A bound as written in a message: 4294967295, not 4.29497e+09."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


BYTE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
MEMORY_SIZE = NumberRule(int, at_least=2**20, meaning="bytes, at least 1 MiB")


def byte_size(text: str) -> int:
    """A memory size typed as bytes, or a number with K, M, G or T (powers of 1024, an optional
    trailing B or iB), e.g. `1500M`, `1.5G`; at least 1 MiB (`MEMORY_SIZE`), else ValueError."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = cleaned[-1:] if cleaned[-1:] in BYTE_UNITS else ""
    try:
        value = float(cleaned[: len(cleaned) - len(unit)]) * BYTE_UNITS[unit]
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not MEMORY_SIZE.accepts(int(value)):
        raise ValueError(f"expected a memory size of at least 1M such as 1500M or 2G, got {text!r}")
    return int(value)


#: How a task's data is split: `tandem run --holdout/--folds/--seed`, `run_task(...)` and a request
#: the Studio sends are all checked by these (tools/data.py: `split_numbers`).
SPLIT_NUMBERS: dict[str, NumberRule] = {
    "holdout": NumberRule(float, above=0, at_most=0.9, meaning="the share of rows kept aside for the final check"),
    "folds": NumberRule(int, at_least=2, meaning="cross-validation folds on the development part"),
    "seed": NumberRule(int, at_least=0, at_most=2**32 - 1, meaning="what scikit-learn's splitters take"),
}
