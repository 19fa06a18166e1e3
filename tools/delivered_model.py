"""The model a run delivers: a fitted pipeline that accepts the user's own DataFrame, as pandas reads it.

A run trains on the table `tools.data.read_table` returns, which strips the spaces around header
names (`" Age"` becomes `"Age"`). The fitted scikit-learn pipeline therefore only knows the cleaned
names, and `joblib.load("model.joblib").predict(pd.read_csv(f))` on a CSV with padded headers used
to fail with "columns are missing". `DeliveredModel` sits in front of the pipeline and turns
whatever frame it is given into the frame the pipeline was trained on:

* columns are matched by their cleaned names, so the names pandas reads (padded or not) and the
  names tandem uses both work; their order does not matter and extra columns (the target, an ID
  the user kept) are ignored;
* each column is coerced to the kind it had in training the way the reader would have read it:
  numbers from text (`" 3 "`, `"NA"` as missing), text from numbers, booleans from `True`/`False`;
* a column the model reads that is missing, or a value that cannot be read as its training kind,
  raises `FrameError`, a `ValueError` (and tandem's `InputError`) whose message is one line naming
  the column. A column the training frame had but the model never reads may be left out.

The class is a plain scikit-learn-style estimator whose attributes are simple (the inner estimator,
lists, dicts and strings), so it pickles, and a safe format such as skops can describe it. It keeps
`predict`, `predict_proba` (for classifiers) and `classes_`. `predict_frame` is what `tandem predict`
does with it: predictions, the kept ID columns, and scores when the file holds the target.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.base import BaseEstimator, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from tandem.tools.builder import predict as predict_for_metrics
from tandem.tools.data import InputError, clean_names, infinities_as_missing, listed_text, logical_dtype, parse_dates
from tandem.tools.formatted_numbers import parse_formatted_numbers
from tandem.tools.metrics import Predictions, score_all
from tandem.tools.spec import EnsembleSpec, PipelineSpec, referenced_columns

ColumnKind = Literal["number", "integer", "bool", "datetime", "text"]

#: Cells pandas' reader takes for a missing value (its default `na_values`), so a frame built by
#: hand with "NA" in a numeric column reads the way the CSV would have.
MISSING_TEXTS = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA"}
    | {"NULL", "NaN", "None", "n/a", "nan", "null"}
)
_TRUE_TEXTS = frozenset({"true", "1", "1.0"})
_FALSE_TEXTS = frozenset({"false", "0", "0.0"})


class FrameError(InputError):
    """The frame given to a delivered model lacks a column it reads or holds a value of the wrong kind.

    A `ValueError` (scikit-learn's error for bad input) and tandem's `InputError` (so the command
    line prints it as one line and exits with status 2).
    """


class DeliveredModel(BaseEstimator):
    """A fitted pipeline behind a door that accepts the user's raw frame (see the module docstring).

    Parameters:
        estimator: the scikit-learn estimator (a tandem pipeline); `fit` clones it, `wrap` keeps it.
        required: the columns the estimator actually reads; None means every training column.
        target: the target's name, never treated as an input even when the frame holds it.

    Fitted attributes:
        estimator_: the fitted estimator.
        feature_names_in_: the training columns, in training order (tandem's cleaned names).
        n_features_in_: how many.
        dtypes_: each training column's dtype as a string (e.g. "float64", "str", "bool").
        required_: the columns a frame must hold (sorted).
    """

    def __init__(self, estimator: Any = None, *, required: Sequence[str] | None = None, target: str | None = None):
        self.estimator = estimator
        self.required = required
        self.target = target

    # ------------------------------------------------------------------ fitting and wrapping

    def fit(self, X: Any, y: Any) -> DeliveredModel:
        """Learn the input schema from `X` and fit a clone of `estimator` on it."""
        if self.estimator is None:
            raise ValueError("DeliveredModel needs an estimator to fit")
        frame = _as_training_frame(X, self.target)
        self._learn_schema(frame)
        self.estimator_ = clone(self.estimator).fit(frame, y)
        return self

    @classmethod
    def wrap(
        cls, fitted: Any, X: pd.DataFrame, *, required: Iterable[str] | None = None, target: str | None = None
    ) -> DeliveredModel:
        """An already fitted estimator behind the door, with the schema read from its training frame `X`.

        Delivery fits the pipeline itself (`tools.training.fit_final`) and wraps it here, so the
        delivered model is exactly the one scored on the holdout.
        """
        model = cls(fitted, required=None if required is None else sorted(required), target=target)
        model._learn_schema(_as_training_frame(X, target))
        model.estimator_ = fitted
        return model

    def _learn_schema(self, frame: pd.DataFrame) -> None:
        names = [str(c) for c in frame.columns]
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.dtypes_ = {name: logical_dtype(frame[name]) for name in names}  # as read, not as held compact
        required = names if self.required is None else [str(c) for c in self.required]
        unknown = sorted(set(required) - set(names))
        if unknown:
            raise ValueError(f"required columns are not in the training frame: {unknown}")
        self.required_ = sorted(required)

    @property
    def text_columns(self) -> list[str]:
        """The columns the model learnt as text, which a new file's reader must not take for numbers."""
        return [name for name, dtype in self.dtypes_.items() if _kind_of_dtype(dtype) == "text"]

    # ------------------------------------------------------------------ predicting

    @property
    def classes_(self) -> np.ndarray:
        """The classes of the inner classifier, in the order of `predict_proba`'s columns."""
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.classes_)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels or values for the rows of `X` (a DataFrame as read, or a 2-D array)."""
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.predict(self.prepare(X)))

    def _has_proba(self) -> bool:
        inner = getattr(self, "estimator_", self.estimator)
        return hasattr(inner, "predict_proba")

    @available_if(_has_proba)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of `classes_`."""
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.predict_proba(self.prepare(X)))

    def prepare(self, X: Any) -> pd.DataFrame:
        """The frame the inner estimator sees: training columns, training order, training kinds.

        Raises `FrameError` (one line) for a missing column the model reads, two columns that are
        the same after stripping spaces, or a value that cannot be read as its column's kind.
        """
        check_is_fitted(self, "feature_names_in_")
        names = [str(n) for n in self.feature_names_in_]
        if not isinstance(X, pd.DataFrame):
            X = self._frame_from_array(X, names)
        by_name = _match_columns(X, names)
        missing = [n for n in self.required_ if n not in by_name]
        if missing:
            raise FrameError(_missing_message(missing, [str(c) for c in X.columns]))
        columns: dict[str, pd.Series] = {}
        for name in names:
            dtype = self.dtypes_.get(name, "object")
            if name in by_name:
                columns[name] = coerce_column(X[by_name[name]], dtype, name)
            else:  # never read by the model: any placeholder of the right kind will do
                columns[name] = _empty_column(dtype, X.index)
        return pd.DataFrame(columns, index=X.index)

    def _frame_from_array(self, X: Any, names: list[str]) -> pd.DataFrame:
        array = np.asarray(X, dtype=object)
        if array.ndim != 2 or array.shape[1] != len(names):
            raise FrameError(
                f"an array given to the model must have {len(names)} columns in the training order "
                f"({', '.join(names[:6])}{', …' if len(names) > 6 else ''}); pass a DataFrame with named columns"
            )
        return pd.DataFrame(array, columns=names)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        inner = getattr(self, "estimator_", self.estimator)
        if inner is not None and hasattr(inner, "__sklearn_tags__"):
            tags.estimator_type = inner.__sklearn_tags__().estimator_type
        return tags


def _as_training_frame(X: Any, target: str | None) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise ValueError("a DeliveredModel learns its columns from a DataFrame; pass one with named columns")
    frame = X.drop(columns=[target]) if target is not None and target in X.columns else X
    if [str(c) for c in frame.columns] != clean_names([str(c) for c in frame.columns]):
        frame = frame.set_axis(clean_names([str(c) for c in frame.columns]), axis=1)
    return frame


def _match_columns(X: pd.DataFrame, names: Sequence[str]) -> dict[str, Any]:
    """Training name -> the frame's column label holding it; an exact name wins over a padded one."""
    wanted = set(names)
    found: dict[str, Any] = {}
    exact: set[str] = set()
    for label, cleaned in zip(X.columns, clean_names([str(c) for c in X.columns]), strict=True):
        if cleaned not in wanted:
            continue
        is_exact = str(label) == cleaned
        if cleaned in found and (is_exact == (cleaned in exact)):
            raise FrameError(
                f"the frame has two columns named {cleaned!r} once surrounding spaces are removed "
                f"({found[cleaned]!r} and {label!r}); keep one"
            )
        if cleaned not in found or is_exact:
            found[cleaned] = label
            if is_exact:
                exact.add(cleaned)
    return found


def _missing_message(missing: Sequence[str], have: Sequence[str]) -> str:
    first = missing[0]
    close = difflib.get_close_matches(first, [c.strip() for c in have], n=1, cutoff=0.6)
    hint = f" (closest: {close[0]!r})" if close else ""
    more = f" and {len(missing) - 1} more ({', '.join(map(repr, missing[1:4]))}{', …' if len(missing) > 4 else ''})"
    return (
        f"the data lacks column {first!r}{hint}{more if len(missing) > 1 else ''}, which the model reads; "
        "add it with the training file's values (a blank cell is a missing value)"
    )


def _empty_column(dtype: str, index: pd.Index) -> pd.Series:
    if dtype.startswith(("int", "uint", "float", "Int", "UInt", "Float")):
        return pd.Series(np.nan, index=index, dtype="float64")
    return pd.Series(None, index=index, dtype="object")


# ---------------------------------------------------------------------------------------------
# Coercion: a new frame's column read the way the training file's column was
# ---------------------------------------------------------------------------------------------


def coerce_column(column: pd.Series, dtype: str, name: str) -> pd.Series:
    """`column` as the kind `dtype` (the training column's dtype) has, or a `FrameError` naming `name`."""
    kind = _kind_of_dtype(dtype)
    if kind in ("number", "integer"):
        return _as_numbers(column, name)
    if kind == "bool":
        return _as_booleans(column, name)
    if kind == "datetime":
        return _as_datetimes(column, name)
    return _as_text(column, dtype)


def _kind_of_dtype(dtype: str) -> ColumnKind:
    if dtype in ("bool", "boolean"):
        return "bool"
    if dtype.startswith(("int", "uint", "Int", "UInt")):
        return "integer"
    if dtype.startswith(("float", "Float")):
        return "number"
    if dtype.startswith("datetime64"):
        return "datetime"
    return "text"


def _texts(column: pd.Series) -> pd.Series:
    """Cells as stripped strings, with the reader's missing-value spellings turned into NaN."""
    texts = column.astype(object).where(column.notna())
    stripped = texts.map(lambda v: v.strip() if isinstance(v, str) else v)
    return stripped.where(~stripped.isin(MISSING_TEXTS))


def _reject(column: pd.Series, bad: pd.Series, name: str, kind: str) -> FrameError:
    positions = np.flatnonzero(bad.to_numpy(dtype=bool))  # by position: a frame's index may repeat labels
    first, value = column.index[positions[:1]].tolist()[0], column.iloc[positions[0]]  # as Python, not numpy
    others = f" and {len(positions) - 1} more rows" if len(positions) > 1 else ""
    return FrameError(
        f"column {name!r} must hold {kind}, as in training, but row {first!r} holds {str(value)[:40]!r}{others}; "
        "fix those cells or leave them blank"
    )


def _as_numbers(column: pd.Series, name: str) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(column) or isinstance(column.dtype, pd.PeriodDtype):
        if bool(column.notna().any()):  # nanoseconds since 1970 are not the measurement trained on
            raise _reject(column, column.notna(), name, "numbers")
        return pd.Series(np.nan, index=column.index, dtype="float64")
    if ptypes.is_bool_dtype(column):
        return column.astype("float64")
    if ptypes.is_numeric_dtype(column):
        return infinities_as_missing(column)  # as the run read them (`tools.data.prepare_task`)
    texts = _texts(column)
    numbers = pd.to_numeric(texts, errors="coerce")
    bad = texts.notna() & numbers.isna()
    if bool(bad.any()):
        formatted = parse_formatted_numbers(texts)  # "$1,234.50", "45%": what the reader accepts in a CSV
        if formatted is None:
            raise _reject(column, bad, name, "numbers")
        return formatted
    return infinities_as_missing(numbers.astype("float64"))


def _as_booleans(column: pd.Series, name: str) -> pd.Series:
    if ptypes.is_bool_dtype(column) and not column.isna().any():
        return column.astype(bool)
    texts = _texts(column).map(lambda v: str(v).lower() if v is not None and v == v else v)
    values = texts.map(lambda v: True if v in _TRUE_TEXTS else False if v in _FALSE_TEXTS else v)
    bad = values.notna() & ~values.isin([True, False])
    if bool(bad.any()):
        raise _reject(column, bad, name, "True/False values")
    if bool(values.isna().any()):  # as the reader gives a boolean column with gaps: objects
        return values.astype(object)
    return values.astype(bool)


def _as_datetimes(column: pd.Series, name: str) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(column):
        return column
    texts = _texts(column)
    stamps = parse_dates(texts, "mixed")
    bad = texts.notna() & stamps.isna()
    if bool(bad.any()):
        raise _reject(column, bad, name, "dates")
    return stamps


def _as_text(column: pd.Series, dtype: str) -> pd.Series:
    """Text as the reader keeps it: numbers written without a spurious `.0`, missing cells NaN."""
    if not (ptypes.is_numeric_dtype(column) or ptypes.is_bool_dtype(column)):
        return column
    texts = column.astype(object).map(_number_text).where(column.notna())
    return texts.astype("str") if dtype == "str" else texts.astype(object)


def _number_text(value: Any) -> Any:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------------------------------------
# Delivery and prediction
# ---------------------------------------------------------------------------------------------


def deliverable(fitted: Any, X: pd.DataFrame, spec: PipelineSpec | EnsembleSpec, *, target: str) -> DeliveredModel:
    """The fitted model of `spec`, trained on `X`, as the object a run saves (`model.joblib`)."""
    return DeliveredModel.wrap(fitted, X, required=referenced_columns(spec) & set(map(str, X.columns)), target=target)


def as_delivered(model: Any) -> DeliveredModel:
    """A model loaded from a run folder, behind the door even when an older tandem saved it bare.

    A bare pipeline knows its training columns (`feature_names_in_`) but not their dtypes, so its
    columns are matched by cleaned name and passed on as they are.
    """
    if isinstance(model, DeliveredModel):
        return model
    names = [str(n) for n in getattr(model, "feature_names_in_", [])]
    wrapped = DeliveredModel(model, required=names)
    wrapped.feature_names_in_ = np.asarray(names, dtype=object)
    wrapped.n_features_in_ = len(names)
    wrapped.dtypes_ = {}
    wrapped.required_ = sorted(names)
    wrapped.estimator_ = model
    if not names:
        raise InputError("the model file holds no record of its input columns; deliver the run again")
    return wrapped


@dataclass(frozen=True)
class PredictionResult:
    """What `tandem predict` has to say about a file: one row of predictions per input row, and
    the scores on the run's metrics when the file holds the target."""

    predictions: pd.DataFrame
    scores: dict[str, float] = field(default_factory=dict)
    n_scored: int = 0
    notes: tuple[str, ...] = ()


def predict_frame(
    model: Any, frame: pd.DataFrame, task: Mapping[str, Any], *, keep: Sequence[str] = ()
) -> PredictionResult:
    """Predict every row of `frame` with a run's model; keep the `keep` columns in front.

    `task` is the run's task (summary.json's `task`): its type, classes and positive class give
    the probability columns, its target and metrics the scores, computed on the rows whose target
    is known when the frame holds the target. Raises `InputError` (one line) for bad input.
    """
    door = as_delivered(model)
    kept = _kept_columns(frame, keep)
    classes, pos_label = tuple(task.get("classes") or ()), task.get("positive_class")
    task_type = str(task["task_type"])
    try:
        pred = predict_for_metrics(door, frame, task_type, classes, pos_label)
    except InputError:
        raise
    except Exception as exc:  # a failure inside the pipeline is still one line, never a traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(f"the model could not predict these rows: {type(exc).__name__}: {first}") from None
    out = pd.DataFrame({name: frame[label] for name, label in kept.items()}, index=frame.index)
    produced = ["prediction", *(f"proba_{label}" for label in classes if pred.proba is not None)]
    clash = [name for name in produced if name in out.columns]
    if clash:  # the kept column would be overwritten: an ID column lost without a word
        raise InputError(f"a kept column is called {clash[0]!r}, which the output uses; rename it in the file")
    out["prediction"] = pred.y_pred
    if pred.proba is not None:
        for i, label in enumerate(classes):
            out[f"proba_{label}"] = pred.proba[:, i]
    scores, n_scored, notes = _scores(frame, pred, task)
    blank = int(frame.isna().all(axis=1).sum())
    if blank:  # a spreadsheet's trailing empty rows: predicted, but from nothing
        notes = (
            *notes,
            f"{blank} rows have no values at all (a spreadsheet's empty rows?): their predictions are the "
            "model's answer for a row it knows nothing about; remove those rows",
        )
    return PredictionResult(predictions=out, scores=scores, n_scored=n_scored, notes=notes)


def _kept_columns(frame: pd.DataFrame, keep: Sequence[str]) -> dict[str, Any]:
    """Output name -> the frame's column for each `--keep` column, matched like the model's inputs."""
    cleaned = dict(zip(clean_names([str(c) for c in frame.columns]), frame.columns, strict=True))
    kept: dict[str, Any] = {}
    for name in keep:
        key = clean_names([str(name)])[0]
        if key not in cleaned:
            close = difflib.get_close_matches(key, list(cleaned), n=1, cutoff=0.6)
            hint = f"closest: {close[0]!r}" if close else f"columns are: {', '.join(map(repr, list(cleaned)[:8]))}"
            raise InputError(f"--keep {name!r}: the data has no such column; {hint}")
        kept[key] = cleaned[key]
    return kept


def _scores(
    frame: pd.DataFrame, pred: Predictions, task: Mapping[str, Any]
) -> tuple[dict[str, float], int, tuple[str, ...]]:
    """The run's metrics on the rows of `frame` whose target is known (none when it has no target)."""
    target = task.get("target")
    cleaned = dict(zip(clean_names([str(c) for c in frame.columns]), frame.columns, strict=True))
    if not target or target not in cleaned:
        return {}, 0, ()
    y = frame[cleaned[target]]
    known = y.notna().to_numpy()
    notes: list[str] = []
    task_type = str(task["task_type"])
    if task_type == "regression":
        values = pd.to_numeric(_texts(y), errors="coerce")
        usable = known & values.notna().to_numpy()
        y_true = values.to_numpy(dtype=float)
    else:
        classes = tuple(task.get("classes") or ())
        y_true = np.asarray([_as_label(v, classes) for v in y], dtype=object)
        usable = known & np.asarray([v in classes for v in y_true], dtype=bool)
        unseen = int((known & ~usable).sum())
        if unseen:
            notes.append(f"{unseen} rows have a label never seen in training and are not scored")
    if not bool(usable.any()):
        return {}, 0, tuple(notes)
    if int((~known).sum()):
        notes.append(f"{int((~known).sum())} rows have no target value and are not scored")
    sub = Predictions(
        y_pred=pred.y_pred[usable],
        proba=None if pred.proba is None else pred.proba[usable],
        classes=pred.classes,
        pos_label=pred.pos_label,
    )
    truth = y_true[usable]
    if task_type != "regression" and all(isinstance(c, int | np.integer) for c in task.get("classes") or ()):
        truth = truth.astype(np.int64)
    with warnings.catch_warnings():  # a metric these rows cannot define is said below, in one note
        warnings.simplefilter("ignore")
        scores = score_all(list(task.get("metrics") or ()), truth, sub)
    undefined = [name for name, value in scores.items() if not math.isfinite(value)]
    if undefined:
        notes.append(f"{listed_text(undefined)} cannot be computed on these rows (one class only, or too few rows)")
    kept = {name: float(value) for name, value in scores.items() if name not in undefined}
    return kept, int(usable.sum()), tuple(notes)


def _as_label(value: Any, classes: tuple[Any, ...]) -> Any:
    """A file's label as the run's class: 1.0 read from a column with gaps is the class 1."""
    if isinstance(value, np.generic):
        value = value.item()
    if value in classes:
        return value
    if isinstance(value, float) and value.is_integer() and int(value) in classes:
        return int(value)
    if isinstance(value, str):
        for c in classes:
            if str(c) == value.strip():
                return c
    return value


__all__ = [
    "DeliveredModel",
    "FrameError",
    "PredictionResult",
    "as_delivered",
    "coerce_column",
    "deliverable",
    "predict_frame",
]
