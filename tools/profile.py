"""Profile a user's table once, before any model is trained.

The agents reason about a dataset they never see in full: everything they know about it comes from
this profile. So it has to say the things that change modelling decisions (which columns are row IDs,
which leak the target, which are constant or duplicated, which are free text or dates, how skewed or
imbalanced things are, which features look promising) and it has to be cheap enough to run on a
million rows without the user noticing. Column kinds are decided from the data, never from column
names, because users name columns however they like.

The result is plain data (pydantic models holding only finite Python floats, ints and strings), so it
can be stored in a LangGraph checkpoint and pasted into a prompt as JSON.

Counts and rates (missing values, distinct values, duplicate rows) are exact. Statistics that need a
sort, a parse or a pairwise comparison (Spearman, datetime parsing, text lengths, target strength,
leakage) are computed on a fixed-seed sample of at most ``SAMPLE_ROWS`` rows, which is plenty for a
univariate estimate and keeps profiling fast.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes
from pydantic import BaseModel, ConfigDict
from scipy.stats import rankdata

from tandem.tools.data import guess_date_format, logical_dtype
from tandem.tools.spec import TaskType

ColumnKind = Literal["numeric", "categorical", "text", "datetime", "boolean", "id"]

SAMPLE_ROWS = 200_000  # rows used for the expensive statistics
MAX_CATEGORIES = 50  # most frequent categories kept for strength statistics; the rest are lumped
SEED = 0

_DATE_CHECK_VALUES = 1_000  # values tested against the date pattern
_WORD_CHECK_VALUES = 20_000  # values whose words are counted for the text rule
_MIXED_PARSE_VALUES = 10_000  # cap for slow per-value datetime parsing
_MIN_LEAK_ROWS = 30  # fewer paired rows than this cannot prove a leak
_HEAVY_MISSING = 0.5
_ID_ORDER_CORRELATION = 0.95  # |rank correlation| with the row order that makes unique integers an ID
_ID_MAX_SPAN = 2.0  # a counter's values fill at least half their range (a holdout or sample took the rest)
_ID_NOISE_SIGMAS = 3.0  # a shuffled counter's target strength is within this many chance deviations of 0
_ID_MAX_STRENGTH = 0.15  # and never above this, so a real rank feature on small data is kept
_STRONG_TOP = 10

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_BOOLEAN_PAIRS = [frozenset(pair) for pair in (("0", "1"), ("true", "false"), ("yes", "no"), ("y", "n"), ("t", "f"))]
_DATE = (
    r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
    r"|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})"
    r"|\d{1,2}[ -][A-Za-z]{3,9}[ -]\d{4}"
    r"|[A-Za-z]{3,9} \d{1,2},? \d{4})"
)
_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: ?[AaPp][Mm])?(?: ?Z|[+-]\d{2}:?\d{2})?)?"
_DATE_PATTERN = re.compile(rf"\s*{_DATE}{_TIME}\s*")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnProfile(_Frozen):
    """What the agents need to know about one feature column."""

    name: str
    kind: ColumnKind
    dtype: str
    missing_rate: float
    n_unique: int
    unique_ratio: float
    skew: float | None
    min: float | None
    max: float | None
    is_constant: bool
    duplicate_of: str | None
    leaks_target: bool
    leak_reason: str | None
    target_strength: float
    mean_length: float | None


class TargetProfile(_Frozen):
    """The target's distribution: class balance for classification, shape and range for regression."""

    name: str
    task_type: TaskType
    n_classes: int | None
    class_counts: dict[str, int] | None
    minority_class: str | None
    imbalance_ratio: float | None
    skew: float | None
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    all_positive: bool | None


SHARED_SCALE_COLUMNS = 20
"""Fewer columns than this are read as separate measurements, whatever their ranges."""
SHARED_SCALE_SPAN = 0.25
"""The median column's range, as a share of all columns' range, from which they share one scale."""


class DatasetProfile(_Frozen):
    """The whole profile: one row per feature column, the target, and the findings worth acting on."""

    n_rows: int
    n_columns: int
    n_duplicate_rows: int
    target: TargetProfile
    columns: list[ColumnProfile]
    strongest: list[tuple[str, float]]
    warnings: list[str]

    def column(self, name: str) -> ColumnProfile:
        """The profile of one feature column; a KeyError names the columns that do exist."""
        for col in self.columns:
            if col.name == name:
                return col
        if name == self.target.name:
            raise KeyError(f"{name!r} is the target, not a feature column; see DatasetProfile.target")
        raise KeyError(f"no feature column {name!r}; columns are: {', '.join(c.name for c in self.columns)}")

    def of_kind(self, *kinds: str) -> list[str]:
        """Names of the columns of the given kinds, in file order (e.g. to route them to encoders)."""
        return [col.name for col in self.columns if col.kind in kinds]

    def usable(self) -> list[ColumnProfile]:
        """Columns a model may be trained on: not row IDs, not leaking, not constant, not duplicates."""
        return [col for col in self.columns if _left_out_because(col) is None]

    def shared_scale(self) -> bool:
        """Whether the usable columns are many measurements of one kind on one scale: pixel
        intensities, spectra, counts of words, binary fingerprints. Such data keep their meaning in
        raw distances, which per-column standardising destroys (a border pixel that is almost always
        0 would weigh as much as a central one), so a kernel or neighbour model is fitted unscaled.

        Judged from the columns' kinds and ranges: at least `SHARED_SCALE_COLUMNS` columns, all
        numeric or yes/no, and the median numeric column's range at least `SHARED_SCALE_SPAN` of the
        range all of them cover together. A few columns whose ranges happen to agree (a price, a time
        and an income) are separate measurements, which the column count leaves out."""
        usable = self.usable()
        if len(usable) < SHARED_SCALE_COLUMNS or any(c.kind not in {"numeric", "boolean"} for c in usable):
            return False
        numeric = [c for c in usable if c.kind == "numeric"]
        ranges = [(c.min, c.max) for c in numeric if c.min is not None and c.max is not None]
        if len(ranges) < len(numeric):
            return False
        if not ranges:
            return True  # yes/no columns only: one scale by construction
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        spans = sorted(r[1] - r[0] for r in ranges)
        return high > low and spans[len(spans) // 2] >= SHARED_SCALE_SPAN * (high - low)

    def left_out(self) -> list[str]:
        """Each column `usable` leaves out, with why, in words for the user: a column that silently
        disappears from every model looks like a bug; one that leaks the target is worth fixing
        at its source."""
        return [f"{col.name!r} ({why})" for col in self.columns if (why := _left_out_because(col))]


def _left_out_because(col: ColumnProfile) -> str | None:
    if col.leaks_target:
        return f"it leaks the target: {col.leak_reason}"
    if col.kind == "id":
        return f"a row ID: {col.n_unique} distinct values"
    if col.missing_rate >= 1.0:
        return "empty"
    if col.is_constant:
        return "constant"
    if col.duplicate_of is not None:
        return f"a copy of {col.duplicate_of!r}"
    return None


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def profile_dataset(df: pd.DataFrame, target: str, task_type: str) -> DatasetProfile:
    """Describe ``df`` for the agents, with ``target`` as the column to predict.

    Raises ValueError for input the rest of the pipeline could not use either (no rows, duplicated
    column names, an unknown target or task type, a non-numeric regression target), so the problem
    is reported once, clearly, at the start.
    """
    task = _validate(df, target, task_type)
    n_rows = len(df)
    positions = _sample_positions(n_rows)
    sample = df.iloc[positions] if len(positions) < n_rows else df
    target_profile = _profile_target(df[target], task)
    target_view = _TargetView.build(sample[target], task)

    features = [name for name in df.columns if name != target]
    with np.errstate(over="ignore"):  # values near float64's limit (1e308) overflow a sum: inf, not a printed warning
        columns = [_profile_column(str(name), df[name], sample[name], positions, target_view) for name in features]
    duplicates = _find_duplicate_columns(df, sample, features, columns)
    columns = [
        col.model_copy(update={"duplicate_of": duplicates[col.name]}) if col.name in duplicates else col
        for col in columns
    ]
    n_duplicate_rows = _count_duplicate_rows(df, columns)
    return DatasetProfile(
        n_rows=n_rows,
        n_columns=len(columns),
        n_duplicate_rows=n_duplicate_rows,
        target=target_profile,
        columns=columns,
        strongest=_strongest(columns),
        warnings=_warnings(columns, target_profile, n_rows, n_duplicate_rows, int(df[target].isna().sum())),
    )


def _validate(df: pd.DataFrame, target: str, task_type: str) -> TaskType:
    if task_type not in ("binary", "multiclass", "regression"):
        raise ValueError(f"task_type must be 'binary', 'multiclass' or 'regression', not {task_type!r}")
    if len(df) == 0:
        raise ValueError("the table has no rows")
    if df.columns.has_duplicates:
        dupes = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        raise ValueError(f"column names must be unique; repeated: {', '.join(dupes)}")
    if target not in df.columns:
        raise ValueError(f"target {target!r} is not a column; columns are: {', '.join(map(str, df.columns))}")
    if task_type == "regression" and not ptypes.is_numeric_dtype(df[target]):
        raise ValueError(f"a regression target must be numeric, but {target!r} has dtype {df[target].dtype}")
    return cast(TaskType, task_type)


def _sample_positions(n_rows: int) -> IntArray:
    """Row positions of the statistics sample, sorted so row order (used by the ID rule) survives."""
    if n_rows <= SAMPLE_ROWS:
        return np.arange(n_rows, dtype=np.int64)
    rng = np.random.default_rng(SEED)
    return np.sort(rng.choice(n_rows, size=SAMPLE_ROWS, replace=False)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------------------------


def _finite(value: object) -> float | None:
    """A plain, finite Python float, or None: numpy scalars, NaN and inf do not survive JSON."""
    try:
        number = float(cast(float, value))
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _as_float(series: pd.Series) -> FloatArray:
    return np.asarray(series.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64)


def _finite_or_nan(values: FloatArray) -> FloatArray:
    """Infinities treated as missing: one inf would turn every sum-based statistic into NaN."""
    return np.where(np.isfinite(values), values, np.nan)


def _percent(rate: float) -> str:
    """A share for a message, never rounded up to a misleading 100% or down to 0%."""
    text = f"{rate:.0%}"
    if text in ("0%", "100%") and 0.0 < rate < 1.0:
        text = f"{rate:.1%}"
    return text


def _label(value: object) -> str:
    """Class labels as strings; 1.0 read from a column with gaps is still the class "1"."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _pearson(a: FloatArray, b: FloatArray) -> float:
    if len(a) < 3:
        return 0.0
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    corr = float(np.dot(da, db)) / denom if denom > 0 else 0.0
    return corr if math.isfinite(corr) else 0.0


def _ranks(values: FloatArray) -> FloatArray:
    return np.asarray(rankdata(values), dtype=np.float64)


def _eta(values: FloatArray, groups: IntArray, *, adjust: bool) -> float:
    """Correlation ratio: the share of ``values``' spread explained by the groups, square-rooted.

    ``adjust`` applies the adjusted-R² correction so a column with many small categories does not
    look predictive just because each category fits its own few rows.
    """
    n = len(values)
    if n < 3:
        return 0.0
    centred = values - values.mean()
    total = float(np.dot(centred, centred))
    if total <= 0:
        return 0.0
    counts = np.bincount(groups)
    sums = np.bincount(groups, weights=centred)
    present = counts > 0
    eta2 = min(float((sums[present] ** 2 / counts[present]).sum()) / total, 1.0)
    if adjust:
        k = int(present.sum())
        if n <= k:
            return 0.0
        eta2 = 1.0 - (1.0 - eta2) * (n - 1) / (n - k)
    return math.sqrt(min(max(eta2, 0.0), 1.0))


def _dense(codes: IntArray) -> tuple[IntArray, int]:
    """Renumber non-negative codes to 0..k-1 so contingency tables have no empty rows."""
    used = np.bincount(codes) > 0
    remap = np.cumsum(used) - 1
    return remap[codes].astype(np.int64), int(used.sum())


def _cramers_v(a: IntArray, b: IntArray) -> float:
    """Bias-corrected Cramér's V (Bergsma 2013): association of two categorical codings, 0..1."""
    n = len(a)
    if n < 3:
        return 0.0
    a, r = _dense(a)
    b, k = _dense(b)
    if r < 2 or k < 2:
        return 0.0
    table = np.bincount(a * k + b, minlength=r * k).reshape(r, k).astype(np.float64)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0))
    phi2 = max(float((table**2 / expected).sum()) - 1.0, 0.0)
    phi2_corr = max(phi2 - (k - 1) * (r - 1) / (n - 1), 0.0)
    r_corr = r - (r - 1) ** 2 / (n - 1)
    k_corr = k - (k - 1) ** 2 / (n - 1)
    denom = min(r_corr - 1, k_corr - 1)
    return min(math.sqrt(phi2_corr / denom), 1.0) if denom > 0 else 0.0


def _purity(groups: IntArray, classes: IntArray, n_classes: int) -> tuple[float, int]:
    """Share of rows whose class is their group's majority class, and the number of groups.

    Groups seen only once are left out: a single row trivially "agrees" with itself, so it is no
    evidence that the column determines the target.
    """
    key = groups * n_classes + classes
    pairs, counts = np.unique(key, return_counts=True)
    n_groups = int(groups.max()) + 1
    sizes = np.bincount(groups, minlength=n_groups)
    majority = np.zeros(n_groups, dtype=np.int64)
    np.maximum.at(majority, pairs // n_classes, counts)
    repeated = sizes >= 2
    covered = int(sizes[repeated].sum())
    purity = float(majority[repeated].sum()) / covered if covered else 0.0
    return purity, int((sizes > 0).sum())


def _factorize(values: pd.Series) -> IntArray:
    """Dense codes with missing values as a category of their own."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes < 0, len(uniques), codes)


def _lump(codes: IntArray) -> IntArray:
    """Keep the MAX_CATEGORIES most frequent codes and fold the rest into one, so tables stay small."""
    counts = np.bincount(codes)
    if len(counts) <= MAX_CATEGORIES + 1:
        return codes
    keep = np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]
    remap = np.full(len(counts), MAX_CATEGORIES, dtype=np.int64)
    remap[keep] = np.arange(MAX_CATEGORIES)
    return remap[codes]


def _subsample(values: pd.Series, size: int) -> pd.Series:
    if len(values) <= size:
        return values
    rng = np.random.default_rng(SEED)
    return values.iloc[np.sort(rng.choice(len(values), size=size, replace=False))]


# --------------------------------------------------------------------------------------------
# Target
# --------------------------------------------------------------------------------------------


def _profile_target(y: pd.Series, task: TaskType) -> TargetProfile:
    name = str(y.name)
    if task == "regression":
        values = y.astype("float64")
        present = values.dropna()
        return TargetProfile(
            name=name,
            task_type=task,
            n_classes=None,
            class_counts=None,
            minority_class=None,
            imbalance_ratio=None,
            skew=_finite(values.skew()),
            min=_finite(values.min()),
            max=_finite(values.max()),
            mean=_finite(values.mean()),
            std=_finite(values.std()),
            all_positive=bool((present > 0).all()) if len(present) else None,
        )
    class_counts: dict[str, int] = {}
    for label, count in y.value_counts(dropna=True).items():
        key = _label(label)
        class_counts[key] = class_counts.get(key, 0) + int(count)
    minority = min(class_counts, key=lambda k: class_counts[k]) if class_counts else None
    ratio = _finite(min(class_counts.values()) / max(class_counts.values())) if class_counts else None
    return TargetProfile(
        name=name,
        task_type=task,
        n_classes=len(class_counts),
        class_counts=class_counts,
        minority_class=minority,
        imbalance_ratio=ratio,
        skew=None,
        min=None,
        max=None,
        mean=None,
        std=None,
        all_positive=None,
    )


@dataclass(frozen=True)
class _TargetView:
    """The target on the sample rows, pre-digested for the pairwise statistics."""

    task: TaskType
    present: BoolArray  # sample rows whose target is known
    values: FloatArray  # regression: target value (NaN if missing)
    classes: IntArray  # classification: class code (-1 if missing)
    n_classes: int
    ranks: FloatArray  # regression: ranks of values[present], reused by Spearman
    shuffle: IntArray  # a random order of the sample rows, so ties never inherit the file's order
    baseline_error: float  # share of rows outside the majority class
    baseline_disagreement: float  # chance two random rows have different classes

    @staticmethod
    def build(y: pd.Series, task: TaskType) -> _TargetView:
        n = len(y)
        shuffle = np.random.default_rng(SEED + 1).permutation(n).astype(np.int64)
        if task == "regression":
            values = _finite_or_nan(_as_float(y))
            present = ~np.isnan(values)
            return _TargetView(
                task=task,
                present=present,
                values=values,
                classes=np.full(n, -1, dtype=np.int64),
                n_classes=0,
                ranks=_ranks(values[present]),
                shuffle=shuffle,
                baseline_error=0.0,
                baseline_disagreement=0.0,
            )
        raw, uniques = pd.factorize(y, use_na_sentinel=True)
        classes = np.asarray(raw, dtype=np.int64)
        present = classes >= 0
        shares = np.bincount(classes[present], minlength=len(uniques)) / max(int(present.sum()), 1)
        return _TargetView(
            task=task,
            present=present,
            values=np.full(n, np.nan),
            classes=classes,
            n_classes=len(uniques),
            ranks=np.empty(0),
            shuffle=shuffle,
            baseline_error=1.0 - float(shares.max(initial=0.0)),
            baseline_disagreement=1.0 - float((shares**2).sum()),
        )

    @property
    def is_regression(self) -> bool:
        return self.task == "regression"


# --------------------------------------------------------------------------------------------
# Column kind
# --------------------------------------------------------------------------------------------


def _is_numeric(series: pd.Series) -> bool:
    return ptypes.is_numeric_dtype(series) and not ptypes.is_bool_dtype(series)


def _numeric_kind(full: pd.Series, sample: pd.Series, positions: IntArray, n_unique: int, ratio: float) -> ColumnKind:
    """boolean for 0/1 columns, id for unique integers that count up with the rows, else numeric.

    "Count up" allows a little disorder (rows appended out of turn): the integers' rank
    correlation with the row order must reach `_ID_ORDER_CORRELATION`. The row order is the
    frame's integer index when it has one (the CSV row numbers of a run's development rows, or
    the original positions of a frame a user shuffled or split with scikit-learn), else the
    position. A counter in shuffled rows is caught later, by `_shuffled_counter`.
    """
    values = _as_float(full)
    if n_unique == 2 and set(np.unique(values[~np.isnan(values)]).tolist()) == {0.0, 1.0}:
        return "boolean"
    if not _unique_integers(full, values, n_unique, ratio):
        return "numeric"  # continuous measurements are all-unique too, and are not IDs
    sampled = _as_float(sample)
    known = ~np.isnan(sampled)
    order = _row_order(sample, positions)
    order_corr = abs(_pearson(_ranks(sampled[known]), _ranks(order[known])))
    return "id" if order_corr >= _ID_ORDER_CORRELATION else "numeric"


def _unique_integers(full: pd.Series, values: FloatArray, n_unique: int, ratio: float) -> bool:
    """(Nearly) every row has its own integer value, and there are more than a handful of them."""
    if ratio < 0.99 or n_unique <= 20:
        return False
    finite = values[np.isfinite(values)]
    return bool(ptypes.is_integer_dtype(full) or np.all(finite == np.floor(finite)))


def _row_order(sample: pd.Series, positions: IntArray) -> FloatArray:
    index = sample.index
    if ptypes.is_integer_dtype(index.dtype) and index.is_unique:
        return np.asarray(index.to_numpy(dtype=np.float64), dtype=np.float64)
    return positions.astype(np.float64)


def _shuffled_counter(full: pd.Series, n_unique: int, ratio: float, strength: float, n_known: int) -> bool:
    """Unique integers filling most of the range they span, in any row order, unrelated to the target.

    That is a row counter (PassengerId, Id) in a file whose rows were shuffled or sorted by
    something else. A rank can look the same, so the column must also say nothing about the
    target: its strength must be within `_ID_NOISE_SIGMAS` of what chance gives on this many rows
    (and below `_ID_MAX_STRENGTH`). Dropping such a column loses nothing a model could use.
    """
    values = _as_float(full)
    if not _unique_integers(full, values, n_unique, ratio) or n_known < 2:
        return False
    finite = values[np.isfinite(values)]
    span = float(finite.max() - finite.min()) + 1.0
    if span > _ID_MAX_SPAN * n_unique:
        return False  # sparse integers (amounts, populations) are measurements, not counters
    return strength <= min(_ID_MAX_STRENGTH, _ID_NOISE_SIGMAS / math.sqrt(n_known))


def _looks_boolean(full: pd.Series) -> bool:
    distinct = {str(v).strip().lower() for v in full.dropna().unique()}
    return len(distinct) == 2 and frozenset(distinct) in _BOOLEAN_PAIRS


def _looks_datetime(texts: pd.Series) -> bool:
    """>= 90% of a sample of values look like a date and parse as one."""
    checked = _subsample(texts, _DATE_CHECK_VALUES)
    if checked.empty:
        return False
    matched = checked[checked.str.fullmatch(_DATE_PATTERN).to_numpy(dtype=bool)]
    if len(matched) < 0.9 * len(checked):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(matched, errors="coerce", format="mixed", utc=True)
    return int(parsed.notna().sum()) >= 0.9 * len(checked)


def _mean_words(texts: pd.Series) -> float:
    counted = _subsample(texts, _WORD_CHECK_VALUES)
    return float(counted.str.count(r"\S+").mean()) if len(counted) else 0.0


def _string_kind(
    full: pd.Series, texts: pd.Series, n_unique: int, ratio: float, mean_length: float | None
) -> ColumnKind:
    """Kind of a string-like column: boolean, datetime, text, id or categorical, in that order."""
    if n_unique == 2 and _looks_boolean(full):
        return "boolean"
    if _looks_datetime(texts):
        return "datetime"
    if mean_length is not None and mean_length > 20 and ratio > 0.5 and _mean_words(texts) >= 3:
        return "text"
    if ratio >= 0.95 and n_unique > 20:
        return "id"
    return "categorical"


# --------------------------------------------------------------------------------------------
# Column against the target
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    """A feature on the sample rows, in the form its statistics need."""

    numbers: FloatArray | None = None  # numeric reading (NaN if missing)
    groups: IntArray | None = None  # lumped category codes, missing as its own code
    fine: IntArray | None = None  # unlumped codes, for the "maps to one class" leak rule


def _datetime_numbers(sample: pd.Series) -> FloatArray:
    """Dates as numbers so they can be rank-correlated with the target."""
    if ptypes.is_datetime64_any_dtype(sample):
        parsed = sample
    else:
        texts = sample.astype("str")
        known = texts.dropna()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fmt = guess_date_format(known)
            if fmt is None:
                texts = texts.where(np.arange(len(texts)) < _MIXED_PARSE_VALUES)
            parsed = pd.to_datetime(texts, errors="coerce", format=fmt or "mixed", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)
    stamps = parsed.to_numpy()
    numbers = stamps.astype("int64").astype(np.float64)
    numbers[np.isnat(stamps)] = np.nan
    return numbers


def _view(kind: ColumnKind, sample: pd.Series, n_unique: int) -> _View:
    if kind == "datetime":
        return _View(numbers=_finite_or_nan(_datetime_numbers(sample)))
    if kind in ("numeric", "id") and _is_numeric(sample):
        fine = _factorize(sample) if kind == "numeric" and n_unique <= MAX_CATEGORIES else None
        return _View(numbers=_finite_or_nan(_as_float(sample)), fine=fine)
    codes = _factorize(sample)
    return _View(groups=_lump(codes), fine=codes if kind in ("boolean", "categorical") else None)


def _strength(view: _View, tv: _TargetView) -> float:
    """Univariate strength of the feature-target relation, 0..1 (one cheap statistic per pairing)."""
    if view.numbers is not None:
        keep = tv.present & ~np.isnan(view.numbers)
        if tv.is_regression:
            return abs(_spearman_with_target(view.numbers, keep, tv))
        return _eta(view.numbers[keep], tv.classes[keep], adjust=False)
    if view.groups is None:
        return 0.0
    if tv.is_regression:
        return _eta(tv.values[tv.present], view.groups[tv.present], adjust=True)
    return _cramers_v(view.groups[tv.present], tv.classes[tv.present])


def _spearman_with_target(numbers: FloatArray, keep: BoolArray, tv: _TargetView) -> float:
    feature_ranks = _ranks(numbers[keep])
    target_ranks = tv.ranks if bool(np.array_equal(keep, tv.present)) else _ranks(tv.values[keep])
    return _pearson(feature_ranks, target_ranks)


def _leak_reason(kind: ColumnKind, view: _View, tv: _TargetView, strength: float) -> str | None:
    """Why the column looks like a copy or a deterministic function of the target, or None.

    Only columns a model would actually use are checked; IDs, free text and dates are handled by
    their own rules and would only produce noise here. ``strength`` is the column's target strength,
    which for a numeric column and a numeric target is already its |Spearman|.
    """
    if kind not in ("numeric", "boolean", "categorical"):
        return None
    if view.numbers is not None:
        keep = tv.present & ~np.isnan(view.numbers)
        if int(keep.sum()) < _MIN_LEAK_ROWS:
            return None
        if tv.is_regression:
            return _regression_numeric_leak(view.numbers, keep, tv, strength)
        return _class_numeric_leak(view, keep, tv)
    if view.fine is None or int(tv.present.sum()) < _MIN_LEAK_ROWS:
        return None
    fine = view.fine[tv.present]
    if tv.is_regression:
        if len(np.unique(fine)) >= 0.5 * len(fine):
            return None
        eta = _eta(tv.values[tv.present], fine, adjust=True)
        return f"its categories explain {eta:.1%} of the target (correlation ratio)" if eta >= 0.98 else None
    return _purity_leak(fine, tv.classes[tv.present], tv)


def _regression_numeric_leak(numbers: FloatArray, keep: BoolArray, tv: _TargetView, spearman: float) -> str | None:
    pearson = abs(_pearson(numbers[keep], tv.values[keep]))
    if pearson >= 0.98:
        return f"Pearson correlation {pearson:.3f} with the target"
    if spearman >= 0.98:
        return f"Spearman correlation {spearman:.3f} with the target"
    return None


def _class_numeric_leak(view: _View, keep: BoolArray, tv: _TargetView) -> str | None:
    assert view.numbers is not None
    rows = tv.shuffle[keep[tv.shuffle]]  # kept rows in random order, so a stable sort breaks ties randomly
    order = np.argsort(view.numbers[rows], kind="stable")
    values, classes = view.numbers[rows][order], tv.classes[rows][order]
    if tv.n_classes == 2:
        auc = _separation_auc(_sorted_ranks(values), classes == classes[0])
        if auc >= 0.99:
            return f"on its own it separates the classes with ROC-AUC {auc:.3f}"
    if view.fine is not None:
        return _purity_leak(view.fine[keep], tv.classes[keep], tv)
    disagreement = float(np.mean(classes[1:] != classes[:-1]))
    if disagreement <= 0.01 and disagreement <= 0.1 * tv.baseline_disagreement:
        return f"sorted by this column, neighbouring rows share the class {1 - disagreement:.1%} of the time"
    return None


def _sorted_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks of an already sorted array, ties sharing their average rank."""
    n = len(values)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ends = np.r_[starts[1:], n]
    average = (starts + ends + 1) / 2.0
    return np.asarray(np.repeat(average, ends - starts), dtype=np.float64)


def _separation_auc(ranks: FloatArray, positive: BoolArray) -> float:
    """ROC-AUC of the raw column as a score, in whichever direction separates better."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    auc = (float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return max(auc, 1.0 - auc)


def _purity_leak(groups: IntArray, classes: IntArray, tv: _TargetView) -> str | None:
    """>= 99% of rows carry their value's majority class, with far fewer values than rows.

    The error must also be a tenth of what always guessing the majority class would give, so a
    heavily imbalanced target does not make every column look like a leak.
    """
    purity, n_groups = _purity(groups, classes, max(tv.n_classes, 1))
    if n_groups >= 0.5 * len(groups):
        return None
    error = 1.0 - purity
    if purity >= 0.99 and error <= 0.1 * tv.baseline_error:
        return f"each of its {n_groups} values maps to a single class for {purity:.1%} of rows"
    return None


# --------------------------------------------------------------------------------------------
# One column
# --------------------------------------------------------------------------------------------


def _profile_column(
    name: str, full: pd.Series, sample: pd.Series, positions: IntArray, tv: _TargetView
) -> ColumnProfile:
    """Everything about one column except ``duplicate_of``, which needs all the columns."""
    dtype = logical_dtype(full)  # as read by default, not as held (tools/data.py: compact_frame)
    if ptypes.is_timedelta64_dtype(full):  # durations are numbers of seconds for every purpose here
        full, sample = full.dt.total_seconds(), sample.dt.total_seconds()
    n_rows = len(full)
    n_missing = int(full.isna().sum())
    n_unique = int(full.nunique(dropna=True))
    ratio = n_unique / (n_rows - n_missing) if n_rows > n_missing else 0.0
    mean_length: float | None = None
    if ptypes.is_bool_dtype(full):
        kind: ColumnKind = "boolean"
    elif ptypes.is_datetime64_any_dtype(full):
        kind = "datetime"
    elif _is_numeric(full):
        kind = _numeric_kind(full, sample, positions, n_unique, ratio)
    else:
        texts = sample.dropna().astype("str")
        mean_length = _finite(texts.str.len().mean()) if len(texts) else None
        kind = _string_kind(full, texts, n_unique, ratio, mean_length)
    view = _view(kind, sample, n_unique)
    is_constant = n_unique <= 1
    strength = 0.0 if is_constant else min(max(_finite(_strength(view, tv)) or 0.0, 0.0), 1.0)
    if kind == "numeric" and _shuffled_counter(full, n_unique, ratio, strength, int(tv.present.sum())):
        kind = "id"
    leak = None if is_constant else _leak_reason(kind, view, tv, strength)
    numeric = kind == "numeric"
    return ColumnProfile(
        name=name,
        kind=kind,
        dtype=dtype,
        missing_rate=n_missing / n_rows,
        n_unique=n_unique,
        unique_ratio=float(ratio),
        skew=_finite(full.skew()) if numeric else None,
        min=_finite(full.min()) if numeric else None,
        max=_finite(full.max()) if numeric else None,
        is_constant=is_constant,
        duplicate_of=None,
        leaks_target=leak is not None,
        leak_reason=leak,
        target_strength=round(strength, 6),
        mean_length=mean_length,
    )


# --------------------------------------------------------------------------------------------
# Whole-table checks
# --------------------------------------------------------------------------------------------


def _family(series: pd.Series) -> str:
    if ptypes.is_bool_dtype(series) or ptypes.is_numeric_dtype(series):
        return "number"
    if ptypes.is_datetime64_any_dtype(series):
        return "datetime"
    return "other"


def _comparable(series: pd.Series) -> npt.NDArray[np.generic]:
    """Values in a form where equal data compares equal whatever the dtype (int 1 == float 1.0)."""
    if _family(series) == "number":
        return _as_float(series)
    if _family(series) == "datetime":
        return np.asarray(series.astype("int64").to_numpy())
    return np.asarray(series.astype("object").to_numpy())


def _fingerprint(series: pd.Series) -> int:
    """A cheap hash of the sample values; columns with different fingerprints cannot be equal."""
    values = _comparable(series)
    if values.dtype == np.float64:
        values = np.where(np.isnan(values), -1.2345e300, values) + 0.0  # + 0.0 turns -0.0 into 0.0
        return hash(values.tobytes())
    hashed = pd.util.hash_pandas_object(pd.Series(values, dtype="object"), index=False)
    return hash(np.asarray(hashed.to_numpy()).tobytes())


def _same_values(a: pd.Series, b: pd.Series) -> bool:
    missing_a, missing_b = a.isna().to_numpy(), b.isna().to_numpy()
    if not np.array_equal(missing_a, missing_b):
        return False
    return bool(np.all(_comparable(a)[~missing_a] == _comparable(b)[~missing_b]))


def _find_duplicate_columns(
    df: pd.DataFrame, sample: pd.DataFrame, features: Sequence[object], columns: Sequence[ColumnProfile]
) -> dict[str, str]:
    """Map each column to the first earlier column holding identical values.

    Equal columns must agree on value family, distinct count, missing count and a sample hash, so
    only the rare survivors of those cheap filters are compared in full.
    """
    buckets: dict[tuple[str, int, float, int], list[tuple[object, str]]] = {}
    candidates: dict[tuple[str, int, float], list[object]] = {}
    for key, col in zip(features, columns, strict=True):
        candidates.setdefault((_family(df[key]), col.n_unique, col.missing_rate), []).append(key)
    names = {key: col.name for key, col in zip(features, columns, strict=True)}
    for (family, n_unique, missing), keys in candidates.items():
        if len(keys) < 2:
            continue
        for key in keys:
            bucket = (family, n_unique, missing, _fingerprint(sample[key]))
            buckets.setdefault(bucket, []).append((key, names[key]))
    found: dict[str, str] = {}
    for members in buckets.values():
        originals: list[tuple[object, str]] = []
        for key, name in members:
            match = next((orig for orig_key, orig in originals if _same_values(df[orig_key], df[key])), None)
            if match is None:
                originals.append((key, name))
            else:
                found[name] = match
    return found


def _count_duplicate_rows(df: pd.DataFrame, columns: Sequence[ColumnProfile]) -> int:
    """Exact count of rows repeating an earlier row (target included).

    A fully unique, complete column rules duplicates out at no cost; otherwise rows are compared by
    a 64-bit hash of all their values, which is faster than DataFrame.duplicated on wide frames.
    """
    n_rows = len(df)
    if any(col.n_unique == n_rows for col in columns):
        return 0
    hashes = pd.util.hash_pandas_object(df, index=False)
    return int(hashes.duplicated().sum())


def _strongest(columns: Sequence[ColumnProfile]) -> list[tuple[str, float]]:
    candidates = [col for col in columns if _left_out_because(col) is None]
    ranked = sorted(candidates, key=lambda col: -col.target_strength)  # stable: file order breaks ties
    return [(col.name, col.target_strength) for col in ranked[:_STRONG_TOP]]


def _warnings(
    columns: Sequence[ColumnProfile],
    target: TargetProfile,
    n_rows: int,
    n_duplicate_rows: int,
    target_missing: int,
) -> list[str]:
    """Short findings an agent should act on, most consequential first."""
    found = [f"{col.name} leaks the target ({col.leak_reason}); drop it." for col in columns if col.leaks_target]
    found += [
        f"{col.name} looks like a row ID ({col.n_unique} distinct values); drop it."
        for col in columns
        if col.kind == "id"
    ]
    found += [f"{col.name} is constant; drop it." for col in columns if col.is_constant]
    found += [
        f"{col.name} duplicates {col.duplicate_of}; drop it."
        for col in columns
        if col.duplicate_of and not col.is_constant
    ]
    found += [
        f"{col.name} is {_percent(col.missing_rate)} missing."
        for col in columns
        if _HEAVY_MISSING <= col.missing_rate < 1.0
    ]
    if n_duplicate_rows:
        found.append(f"{n_duplicate_rows} rows ({n_duplicate_rows / n_rows:.1%}) repeat an earlier row.")
    if target_missing:
        found.append(f"The target is missing in {target_missing} rows; they cannot be used for training.")
    found += _target_warnings(target)
    return found


def _target_warnings(target: TargetProfile) -> list[str]:
    if target.task_type == "regression":
        return []
    n_classes = target.n_classes or 0
    found = []
    if target.task_type == "binary" and n_classes != 2:
        found.append(f"The task is binary but the target has {n_classes} classes.")
    if target.task_type == "multiclass" and n_classes < 3:
        found.append(f"The task is multiclass but the target has {n_classes} classes.")
    if target.imbalance_ratio is not None and target.imbalance_ratio < 0.2:
        found.append(
            f"The target is imbalanced: class {target.minority_class!r} has {target.imbalance_ratio:.1%} "
            "as many rows as the largest class."
        )
    return found
