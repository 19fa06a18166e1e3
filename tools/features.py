"""Feature engineering: turn a spec's declarative feature operations into derived columns.

A `PipelineSpec` lists feature operations as data (see `tools.spec`); this module is the one place
that gives them meaning. `FeatureEngineer` is an ordinary scikit-learn transformer so that it sits
at the head of the model `Pipeline`: whatever it learns (log shifts, Yeo-Johnson lambdas, bin edges,
group statistics, date formats) is learnt in `fit` on the training rows only and merely reused in
`transform`, so cross-validation and the hold-out score never see statistics of rows they predict.

Every operation adds float64 columns named exactly by `feature_outputs(op)` and leaves the raw
columns untouched; the preprocessing stage after it decides which columns the estimator reads.
Undefined values (a zero denominator, an unparseable date, a missing input) become NaN rather than
an error, because the data is a user's arbitrary CSV and the imputer downstream is built for NaN.
All work is vectorised pandas/numpy, so a million rows take about a second.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api.types import is_datetime64_any_dtype, is_numeric_dtype
from pydantic import TypeAdapter
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import PowerTransformer
from sklearn.utils.validation import check_is_fitted

from tandem.tools.data import guess_date_format, parse_dates
from tandem.tools.spec import (
    BinningOp,
    DatePartsOp,
    DifferenceOp,
    FeatureOp,
    GroupAggregateOp,
    LogOp,
    MissingIndicatorOp,
    PowerOp,
    ProductOp,
    RatioOp,
    SumOp,
    TextLengthOp,
    TextTopicsOp,
    TokenCountOp,
    feature_inputs,
    feature_outputs,
)

__all__ = ["FeatureEngineer"]

Floats = npt.NDArray[np.float64]

_OP_ADAPTER: TypeAdapter[FeatureOp] = TypeAdapter(FeatureOp)


class FeatureEngineer(TransformerMixin, BaseEstimator):
    """Adds the derived columns of a spec's feature operations to a DataFrame.

    It is a transformer, not a preprocessing function, so that everything data-dependent is
    fitted inside each cross-validation fold. `operations` is stored exactly as given (pydantic
    ops or plain dicts), which keeps `clone` and `get_params` working; it is validated in `fit`.

    Fitted attributes:
        operations_: the validated operations, in order.
        learnt_: per operation, what `fit` learnt from the training rows (`None` for the
            stateless operations).
        feature_names_in_, n_features_in_: the columns seen in `fit`.
    """

    def __init__(self, operations: tuple[FeatureOp | dict[str, Any], ...] = ()) -> None:
        self.operations = operations

    def fit(self, X: pd.DataFrame, y: object = None) -> FeatureEngineer:
        """Validate the operations and learn their statistics from the training rows `X`."""
        ops = tuple(_OP_ADAPTER.validate_python(op) for op in self.operations)
        outputs = [name for op in ops for name in feature_outputs(op)]
        clashes = sorted({n for n in outputs if outputs.count(n) > 1})
        if clashes:
            raise ValueError(f"feature operations produce the same column more than once: {clashes}")
        _check_frame(X, ops)
        self.operations_ = ops
        self.learnt_ = tuple(_learn(op, X) for op in ops)
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Return `X` with every operation's columns appended (a new frame; `X` is not modified)."""
        check_is_fitted(self, "learnt_")
        if not self.operations_:
            return X
        _check_frame(X, self.operations_)
        added: dict[str, Floats] = {}
        for op, learnt in zip(self.operations_, self.learnt_, strict=True):
            names = feature_outputs(op)
            values = _apply(op, learnt, X)
            added.update(zip(names, values, strict=True))
        return pd.concat([X, pd.DataFrame(added, index=X.index, dtype=np.float64)], axis=1)

    def get_feature_names_out(self, input_features: npt.ArrayLike | None = None) -> npt.NDArray[np.object_]:
        """Input column names followed by every operation's output names, as `transform` orders them."""
        check_is_fitted(self, "learnt_")
        names = list(self.feature_names_in_ if input_features is None else np.asarray(input_features))
        names += [name for op in self.operations_ for name in feature_outputs(op)]
        return np.asarray(names, dtype=object)


# --------------------------------------------------------------------------------------------
# Validation and column access.
# --------------------------------------------------------------------------------------------


def _check_frame(X: pd.DataFrame, ops: tuple[FeatureOp, ...]) -> None:
    """Fail early, naming the column, instead of with a KeyError deep inside one operation."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"FeatureEngineer needs a pandas DataFrame, got {type(X).__name__}")
    needed = dict.fromkeys(c for op in ops for c in feature_inputs(op))
    missing = [c for c in needed if c not in X.columns]
    if missing:
        raise ValueError(f"feature operations need column(s) missing from the data: {missing}")
    if not X.columns.is_unique:
        repeated = [c for c in needed if (X.columns == c).sum() > 1]
        if repeated:
            raise ValueError(f"feature operations read column(s) that appear more than once: {repeated}")
    present = [n for op in ops for n in feature_outputs(op) if n in X.columns]
    if present:
        raise ValueError(f"the data already has column(s) a feature operation would add: {present}")


def _column(X: pd.DataFrame, name: str) -> pd.Series:
    return X[name]  # a single column: `_check_frame` rejected repeated names


def _numeric(X: pd.DataFrame, name: str) -> Floats:
    """A column as float64 with NaN for missing; non-numeric values are coerced (unparseable → NaN)."""
    col = _column(X, name)
    if not is_numeric_dtype(col.dtype):
        col = pd.to_numeric(col, errors="coerce")
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def _finite(values: Floats) -> Floats:
    return values[np.isfinite(values)]


def _text(X: pd.DataFrame, name: str) -> pd.Series:
    """A column as pandas' string dtype; missing values stay missing, other values are `str()`-ed."""
    col = _column(X, name)
    return col if isinstance(col.dtype, pd.StringDtype) else col.astype("str")


def _counts(series: pd.Series) -> Floats:
    """Per-row counts as floats, with missing text counting as zero (an empty text has none)."""
    return np.nan_to_num(series.to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0)


# --------------------------------------------------------------------------------------------
# Dispatch: `_learn` runs in fit, `_apply` in transform; one small function per operation kind.
# --------------------------------------------------------------------------------------------


def _learn(op: FeatureOp, X: pd.DataFrame) -> Any:
    match op:
        case LogOp():
            return _fit_log(op, X)
        case PowerOp():
            return _fit_power(op, X)
        case BinningOp():
            return _fit_binning(op, X)
        case DatePartsOp():
            return _fit_date_parts(op, X)
        case GroupAggregateOp():
            return _fit_group_aggregate(op, X)
        case TextTopicsOp():
            return _fit_text_topics(op, X)
        case _:
            return None


def _apply(op: FeatureOp, learnt: Any, X: pd.DataFrame) -> list[Floats]:
    match op:
        case LogOp():
            return _log(op, learnt, X)
        case PowerOp():
            return _power(op, learnt, X)
        case RatioOp():
            return [_ratio(op, X)]
        case ProductOp():
            return [_numeric(X, op.left) * _numeric(X, op.right)]
        case DifferenceOp():
            return [_numeric(X, op.left) - _numeric(X, op.right)]
        case SumOp():
            return [_sum(op, X)]
        case BinningOp():
            return [_binning(op, learnt, X)]
        case MissingIndicatorOp():
            return [np.asarray(_column(X, c).isna(), dtype=np.float64) for c in op.columns]
        case DatePartsOp():
            return _date_parts(op, learnt, X)
        case GroupAggregateOp():
            return [_group_aggregate(op, learnt, X)]
        case TextLengthOp():
            return [_counts(_text(X, op.column).str.len())]
        case TokenCountOp():
            return [_counts(_text(X, op.column).str.count(r"\S+"))]
        case TextTopicsOp():
            return _text_topics(op, learnt, X)
    raise AssertionError(op)  # pragma: no cover - the union is exhaustive


# --------------------------------------------------------------------------------------------
# log: log1p after shifting by the training minimum when it is negative.
# --------------------------------------------------------------------------------------------


def _fit_log(op: LogOp, X: pd.DataFrame) -> tuple[float, ...]:
    """The shift per column that maps a negative training minimum to 0 (else 0)."""
    shifts = []
    for c in op.columns:
        finite = _finite(_numeric(X, c))
        shifts.append(max(0.0, -float(finite.min())) if finite.size else 0.0)
    return tuple(shifts)


def _log(op: LogOp, shifts: tuple[float, ...], X: pd.DataFrame) -> list[Floats]:
    # Rows below the training minimum would give log1p of a negative; clip them to log1p(0) = 0.
    return [np.log1p(np.clip(_numeric(X, c) + s, 0.0, None)) for c, s in zip(op.columns, shifts, strict=True)]


# --------------------------------------------------------------------------------------------
# power: Yeo-Johnson with the lambda fitted on the training rows' finite values.
# --------------------------------------------------------------------------------------------


def _fit_power(op: PowerOp, X: pd.DataFrame) -> tuple[PowerTransformer | None, ...]:
    fitted: list[PowerTransformer | None] = []
    for c in op.columns:
        finite = _finite(_numeric(X, c))
        fitted.append(
            PowerTransformer(method="yeo-johnson", standardize=False).fit(finite.reshape(-1, 1))
            if finite.size
            else None
        )
    return tuple(fitted)


def _power(op: PowerOp, fitted: tuple[PowerTransformer | None, ...], X: pd.DataFrame) -> list[Floats]:
    out = []
    for c, pt in zip(op.columns, fitted, strict=True):
        values = _numeric(X, c)
        values = np.where(np.isinf(values), np.nan, values)  # sklearn rejects infinity; treat as missing
        out.append(values if pt is None else pt.transform(values.reshape(-1, 1)).ravel())
    return out


# --------------------------------------------------------------------------------------------
# Arithmetic on pairs and sets of columns.
# --------------------------------------------------------------------------------------------


def _ratio(op: RatioOp, X: pd.DataFrame) -> Floats:
    numerator, denominator = _numeric(X, op.numerator), _numeric(X, op.denominator)
    with np.errstate(divide="ignore", invalid="ignore"):
        quotient = numerator / denominator
    return np.where(denominator == 0, np.nan, quotient)  # a NaN denominator already gives NaN


def _sum(op: SumOp, X: pd.DataFrame) -> Floats:
    # NaN if any input is NaN: treating missing as 0 would invent a value the row does not have.
    return functools.reduce(np.add, (_numeric(X, c) for c in op.columns))


# --------------------------------------------------------------------------------------------
# binning: quantile edges from the training rows; the bin index is the feature.
# --------------------------------------------------------------------------------------------


def _fit_binning(op: BinningOp, X: pd.DataFrame) -> Floats:
    """Unique quantile edges (fewer than n_bins + 1 when the column has ties or few values)."""
    finite = _finite(_numeric(X, op.column))
    if not finite.size:
        return np.empty(0, dtype=np.float64)
    return np.unique(np.nanquantile(finite, np.linspace(0.0, 1.0, op.n_bins + 1)))


def _binning(op: BinningOp, edges: Floats, X: pd.DataFrame) -> Floats:
    values = _numeric(X, op.column)
    if not edges.size:
        return np.full(values.shape, np.nan)
    # Only the inner edges matter: anything below the first / above the last lands in the end bins.
    index = np.searchsorted(edges[1:-1], values, side="right").astype(np.float64)
    return np.where(np.isnan(values), np.nan, index)


# --------------------------------------------------------------------------------------------
# date_parts: parse once with the format seen in training, then a per-value fallback.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DateFormat:
    """How to parse a date column: the format guessed from training.

    Guessing the format in `fit` makes train and test rows parse the same way (e.g. day-first),
    whatever value a test frame happens to start with. A value the format does not read is tried
    with `format="mixed"`, once per distinct value (junk such as "unknown" costs one parse, not one
    per row): new data written another way ("12/25/2020" where training had "2020-12-25") was
    read as missing, silently, whenever training itself had needed no retry.
    """

    format: str | None


_DATE_PARTS = ("year", "month", "day_of_week", "day_of_year")


def _fit_date_parts(op: DatePartsOp, X: pd.DataFrame) -> _DateFormat:
    col = _date_source(X, op.column)
    if is_datetime64_any_dtype(col.dtype):
        return _DateFormat(None)
    return _DateFormat(guess_date_format(col.dropna()))


def _date_parts(op: DatePartsOp, fmt: _DateFormat, X: pd.DataFrame) -> list[Floats]:
    col = _date_source(X, op.column)
    if is_datetime64_any_dtype(col.dtype):
        return _parts(col)
    parsed = parse_dates(col, fmt.format)
    parts = _parts(parsed)
    failed = (parsed.isna() & col.notna()).to_numpy()
    if failed.any():
        codes, values = pd.factorize(col[failed])
        recovered = _parts(parse_dates(pd.Series(values, dtype=object), "mixed"))
        parts = [p.copy() for p in parts]
        for part, fill in zip(parts, recovered, strict=True):
            part[failed] = fill[codes]
    return parts


def _date_source(X: pd.DataFrame, name: str) -> pd.Series:
    """A datetime column as is; anything else as text (so 2020 is a year, not nanoseconds since 1970)."""
    col = _column(X, name)
    return col if is_datetime64_any_dtype(col.dtype) else _text(X, name)


def _parts(parsed: pd.Series) -> list[Floats]:
    return [getattr(parsed.dt, p).to_numpy(dtype=np.float64, na_value=np.nan) for p in _DATE_PARTS]


# --------------------------------------------------------------------------------------------
# group_aggregate: a per-group statistic learnt on the training rows.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _GroupStats:
    """The statistic per training group, and the value for a group training never saw."""

    groups: pd.Index
    values: Floats
    fallback: float


def _group_keys(X: pd.DataFrame, name: str) -> pd.Series:
    col = _column(X, name)
    # Match on the values, not on category codes, which differ between frames.
    return col.astype(col.cat.categories.dtype) if isinstance(col.dtype, pd.CategoricalDtype) else col


def _fit_group_aggregate(op: GroupAggregateOp, X: pd.DataFrame) -> _GroupStats:
    keys = _group_keys(X, op.group_by)
    values = pd.Series(_numeric(X, op.column), index=keys.index)
    stats = values.groupby(keys, dropna=True, sort=False).agg(op.agg)
    if op.agg == "count":
        # An unseen group has no training rows: its count is 0, not the count of the whole column.
        return _GroupStats(stats.index, stats.to_numpy(dtype=np.float64), 0.0)
    fallback = float(values.agg(op.agg))
    # A group whose statistic is undefined (all values missing, std of one row) is as good as unseen.
    filled = stats.to_numpy(dtype=np.float64, na_value=np.nan)
    return _GroupStats(stats.index, np.where(np.isnan(filled), fallback, filled), fallback)


def _group_aggregate(op: GroupAggregateOp, stats: _GroupStats, X: pd.DataFrame) -> Floats:
    position = stats.groups.get_indexer(pd.Index(_group_keys(X, op.group_by), copy=False))
    if not stats.values.size:
        return np.full(position.shape, stats.fallback)
    return np.where(position >= 0, stats.values[position], stats.fallback)


# --------------------------------------------------------------------------------------------
# text_topics: TF-IDF of words and word pairs, reduced by a truncated SVD (latent semantic analysis).
# --------------------------------------------------------------------------------------------

#: The vocabulary a text column's TF-IDF keeps at most: its most frequent terms.
TEXT_TOPICS_TERMS = 20_000


def _documents(X: pd.DataFrame, name: str) -> list[str]:
    return [value if isinstance(value, str) else "" for value in _text(X, name).tolist()]


def _fit_text_topics(op: TextTopicsOp, X: pd.DataFrame) -> tuple[TfidfVectorizer, TruncatedSVD] | None:
    """The vocabulary and the components, learnt on the training rows; None when no term appears in
    two of them (the topics are then zero: nothing was learnt that a new row could share).

    Why this and not the terms themselves: a few dozen dense columns work with every family of the
    playbook (boosting, forests, linear models alike) and keep the design matrix small, where
    thousands of sparse term columns would suit only the linear ones. Terms must appear in two
    training rows (`min_df`), so a word seen once, a name or a typo, is not learnt as a topic.
    """
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), min_df=2, max_features=TEXT_TOPICS_TERMS, sublinear_tf=True, dtype=np.float64
    )
    try:
        terms = vectorizer.fit_transform(_documents(X, op.column))
    except ValueError:  # "empty vocabulary": no term appears in two training rows
        return None
    k = min(op.n_topics, terms.shape[1] - 1, terms.shape[0] - 1)
    if k < 1:
        return None
    return vectorizer, TruncatedSVD(n_components=k, random_state=0).fit(terms)


def _text_topics(
    op: TextTopicsOp, learnt: tuple[TfidfVectorizer, TruncatedSVD] | None, X: pd.DataFrame
) -> list[Floats]:
    topics = np.zeros((len(X), op.n_topics))
    if learnt is not None:
        vectorizer, svd = learnt
        found = svd.transform(vectorizer.transform(_documents(X, op.column)))
        topics[:, : found.shape[1]] = found  # fewer components than asked when the vocabulary is small
    return list(topics.T)
