"""Numbers written the way spreadsheets format them: "$1,234.50", "-€12", "45.5%", "1.234,5".

Why: a column exported from a spreadsheet or a finance system often carries its formatting into
the CSV. pandas reads such a column as text, and a run would then take an amount of money for an
identifier or a category of a thousand levels. The reader (`tools.data.read_table`) turns such a
column into the numbers it holds, and the delivered model (`tools.delivered_model`) reads the same
spellings in the frames it is asked to predict, so training and prediction agree.

The rule is strict, so that codes and labels are never mistaken for amounts: every non-missing
cell of the column must be one number with optional sign, currency symbol ($ € £ ¥, before or
after the digits), digits grouped in threes by the thousands separator, decimal part and percent
sign; and the column either writes a percent sign on every number (the values are fractions:
"45%" is 0.45, as in a spreadsheet) or on none. "1,5" in a file whose decimals are points is not
a number here: its group has one digit, not three.

The same column may mark its missing cells the way many exports do ("?", "-", "n.a.", "unknown":
`MISSING_MARKERS`, beyond the spellings pandas' reader already takes for missing): those cells
are missing values, not a reason to read a column of measurements as a thousand categories.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import pandas as pd

#: Currency symbols a formatted amount may carry, before or after its digits.
CURRENCY_SYMBOLS = "$€£¥"

#: Cells that mark a missing value in a column of numbers (compared stripped and lower-cased). A
#: lone "-" is sometimes an accountant's zero; a missing value is the reading that claims less.
MISSING_MARKERS = frozenset({"?", "-", "--", ".", "*", "na", "n.a.", "n/a", "missing", "unknown", "none", "nil"})

#: How many cells of a column are tried first: most text columns fail on their first cell, so a
#: large table pays for the whole column only when its sample is all formatted numbers.
SAMPLE_CELLS = 1_000


@cache
def _pattern(decimal: str) -> re.Pattern[str]:
    """One formatted number, the whole cell (anchored, so `str.extract` matches what `fullmatch` would)."""
    group = re.escape("," if decimal == "." else ".")
    point = re.escape(decimal)
    return re.compile(
        rf"^\s*(?P<sign>[-+]?)\s*(?P<currency>[{CURRENCY_SYMBOLS}]?)\s*(?P<after>[-+]?)"
        rf"(?P<whole>\d{{1,3}}(?:{group}\d{{3}})+|\d+)(?P<fraction>{point}\d+)?"
        rf"\s*(?P<trailing>[{CURRENCY_SYMBOLS}]?)\s*(?P<percent>%?)\s*$"
    )


def parse_formatted_numbers(texts: pd.Series, decimal: str = ".") -> pd.Series | None:
    """The float64 numbers a column of formatted text holds (missing cells and `MISSING_MARKERS`
    are missing), or None when any other cell is not such a number, when no cell is a number, or
    when some numbers carry a percent sign and others not.

    `decimal` is the file's decimal mark ("." or ","); the thousands separator is the other one.
    """
    if not (texts.dtype == object or isinstance(texts.dtype, pd.StringDtype)):
        return None
    pattern = _pattern(decimal)
    head = texts.iloc[:SAMPLE_CELLS]
    head = head[_is_number_cell(head)]
    if not all(isinstance(value, str) for value in head) or not head.astype(str).str.fullmatch(pattern).all():
        return None
    numbers = _is_number_cell(texts)
    present = texts[numbers]
    if len(present) == 0 or not all(isinstance(value, str) for value in present):
        return None
    parts = present.astype(str).str.extract(pattern)
    if parts["whole"].isna().any():  # some cell is not a formatted number
        return None
    percent = parts["percent"] == "%"
    if percent.any() and not percent.all():
        return None
    negative = (parts["sign"] == "-") ^ (parts["after"] == "-")
    doubled = ((parts["sign"] != "") & (parts["after"] != "")) | ((parts["currency"] != "") & (parts["trailing"] != ""))
    if doubled.any():  # "-$-5" and "$5 €" are not numbers
        return None
    group = "," if decimal == "." else "."
    digits = parts["whole"].str.replace(group, "", regex=False) + parts["fraction"].fillna("").str.replace(
        decimal, ".", regex=False
    )
    values = pd.to_numeric(digits, errors="coerce").astype("float64")
    values = values.where(~negative, -values)
    if percent.all():
        values = values / 100.0
    out = pd.Series(np.nan, index=texts.index, dtype="float64", name=texts.name)
    out[numbers.to_numpy()] = values.to_numpy()
    return out


def _is_number_cell(texts: pd.Series) -> pd.Series:
    """Cells that are neither missing nor a missing-value marker."""
    marker = texts.map(lambda value: isinstance(value, str) and value.strip().lower() in MISSING_MARKERS)
    return texts.notna() & ~marker.astype(bool)
