"""What a model does, as plain data a report can draw: the plots a data scientist looks at first.

The report (tools/report_html.py) draws from values, never from a model, so that it can be drawn
again later (`tandem repair`) from a JSON file. This module computes those values:

- from the delivered model and the holdout (`holdout_insight`), once, at delivery: the only
  caller is the deliver node, which already holds the holdout it scored;
- from the out-of-fold predictions the search cached for a candidate (`oof_insight`), during the
  search: development rows only, so a running or killed run has plots without touching the
  holdout.

For a classifier: the confusion matrix, ROC and precision-recall curves (one-vs-rest for
multiclass) and a calibration curve; for a regressor: actual and predicted values (for the
predicted-vs-actual and residual plots). On the holdout also permutation feature importance,
bounded in time (rows subsampled, repeats reduced) so delivery never waits long for it.
Everything here is JSON: lists of floats and strings, no numpy.

`describe_spec` and `key_params` say what a spec *is* (its steps, family and parameters), for
the delivered model and for the leaderboard, instead of the last change that produced it.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NotRequired

import numpy as np
import pandas as pd
from sklearn.metrics import auc, precision_recall_curve, roc_curve
from sklearn.utils import check_random_state
from typing_extensions import TypedDict

from tandem.tools.builder import predict
from tandem.tools.metrics import METRICS, Predictions
from tandem.tools.spec import Preprocessing, parse_spec, referenced_columns
from tandem.tools.training import Problem, load_oof

INSIGHT_FILE = "model_insight.json"
"""The delivered model's insight, in the run folder, so the report can be drawn again without the holdout."""

MAX_CLASSES = 10
"""Curves are drawn for at most this many classes (the most frequent); the confusion matrix
merges the rest into one "(other)" row and column."""
MAX_POINTS = 2000
"""Points kept for a regression scatter (a random, seeded sample beyond that)."""
CURVE_POINTS = 300
"""Points kept per ROC or precision-recall curve (evenly spaced along it)."""
CALIBRATION_BINS = 10
IMPORTANCE_ROWS = 2000
IMPORTANCE_REPEATS = 5
IMPORTANCE_SECONDS = 5.0
"""Permutation importance stops growing at this many seconds: fewer repeats, then fewer rows."""
PREDICT_CELLS = 4_000_000
"""Shuffled copies are predicted this many cells (rows x columns) a call: few calls, bounded memory."""


class Curve(TypedDict):
    """One ROC or precision-recall curve: x (FPR or recall), y (TPR or precision) and its area."""

    label: str
    x: list[float]
    y: list[float]
    area: float
    prevalence: float
    """Share of rows of this class: the precision of a model that guesses (the PR baseline)."""


class CalibrationCurve(TypedDict):
    """Mean predicted probability and observed frequency of a class per probability bin."""

    label: str
    predicted: list[float]
    observed: list[float]
    count: list[int]


class ClassifierPlots(TypedDict):
    kind: Literal["classifier"]
    classes: list[str]
    """Row and column labels of `confusion` (true in rows, predicted in columns)."""
    confusion: list[list[int]]
    labels_from: Literal["model", "highest probability"]
    """Where the predicted labels come from: the model's own decision (its threshold included),
    or, for cached out-of-fold probabilities, the most probable class."""
    roc: list[Curve]
    pr: list[Curve]
    calibration: list[CalibrationCurve]


class RegressionPlots(TypedDict):
    kind: Literal["regression"]
    actual: list[float]
    predicted: list[float]
    shown: int
    """Points in `actual`/`predicted` (at most `MAX_POINTS`, a seeded sample of `rows`)."""


class FeatureImportance(TypedDict):
    column: str
    mean: float
    """Mean drop of the metric (in its better direction) when the column is shuffled."""
    std: float


class Importance(TypedDict):
    metric: str
    rows: int
    repeats: int
    features: list[FeatureImportance]
    """Columns the model reads, most important first (a seeded sample of them when `columns_read`
    is larger: the time bound allowed no more)."""
    columns_read: NotRequired[int]
    """How many columns the model reads (absent from insight written before it was recorded)."""


class ModelInsight(TypedDict):
    source: Literal["holdout", "out-of-fold"]
    experiment_id: int
    rows: int
    plots: ClassifierPlots | RegressionPlots
    importance: Importance | None


class PipelineStep(TypedDict):
    step: str
    what: str


# ---------------------------------------------------------------------------------------------
# Plots from predictions
# ---------------------------------------------------------------------------------------------


def _floats(values: Any, digits: int = 6) -> list[float]:
    return [round(float(v), digits) for v in np.asarray(values, dtype=float)]


def _thin(n: int, keep: int) -> np.ndarray:
    """Indices of `keep` points evenly spread over `n`, both ends included."""
    if n <= keep:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, keep).round().astype(int))


def _calibration(label: str, hit: np.ndarray, proba: np.ndarray) -> CalibrationCurve:
    """Uniform bins over [0, 1] (scikit-learn's `calibration_curve(strategy="uniform")`), with counts."""
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(proba, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    count = np.bincount(which, minlength=CALIBRATION_BINS)  # one pass per sum, not one mask per bin
    used = count > 0
    predicted = np.bincount(which, weights=proba, minlength=CALIBRATION_BINS)[used] / count[used]
    observed = np.bincount(which, weights=hit, minlength=CALIBRATION_BINS)[used] / count[used]
    return CalibrationCurve(
        label=label, predicted=_floats(predicted), observed=_floats(observed), count=[int(c) for c in count[used]]
    )


def _curves(label: str, hit: np.ndarray, proba: np.ndarray) -> tuple[Curve, Curve] | None:
    """ROC and precision-recall curves of one class against the rest (None if only one side occurs)."""
    if hit.all() or not hit.any():
        return None
    fpr, tpr, _ = roc_curve(hit, proba)
    precision, recall, _ = precision_recall_curve(hit, proba)
    # scikit-learn's average precision, from the curve already made rather than sorting the rows again
    average_precision = float(-np.sum(np.diff(recall) * precision[:-1]))
    precision, recall = precision[::-1], recall[::-1]  # recall rising, like the ROC's x
    prevalence = round(float(hit.mean()), 6)
    keep_roc, keep_pr = _thin(len(fpr), CURVE_POINTS), _thin(len(recall), CURVE_POINTS)
    return (
        Curve(label=label, x=_floats(fpr[keep_roc]), y=_floats(tpr[keep_roc]), area=float(auc(fpr, tpr)),
              prevalence=prevalence),
        Curve(label=label, x=_floats(recall[keep_pr]), y=_floats(precision[keep_pr]),
              area=average_precision, prevalence=prevalence),
    )  # fmt: skip


def classifier_plots(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any],
    positive_class: Any,
    labels_from: Literal["model", "highest probability"],
) -> ClassifierPlots:
    """Confusion matrix, one-vs-rest ROC/PR curves and calibration of a classifier's predictions.

    `proba` holds one column per class in the order of `classes`. A binary task gets one curve,
    for its positive class; a multiclass task one per class, for the `MAX_CLASSES` most frequent
    classes. Without probabilities only the confusion matrix is made.
    """
    classes = list(classes)
    # Labels become class positions: scikit-learn cannot type an object array of mixed or numpy labels.
    position = {c: i for i, c in enumerate(classes)}
    true_at = np.array([position.get(v, -1) for v in np.asarray(y_true)], dtype=int)
    pred_at = np.array([position.get(v, -1) for v in np.asarray(y_pred)], dtype=int)
    shown = list(range(len(classes)))
    if len(classes) > MAX_CLASSES + 1:  # merging a single class into "(other)" would hide nothing
        counts = np.bincount(true_at[true_at >= 0], minlength=len(classes))
        shown = sorted(np.argsort(-counts, kind="stable")[:MAX_CLASSES].tolist())
    cell = np.full(len(classes) + 1, len(shown), dtype=int)  # a class not shown goes to "(other)"
    cell[shown] = np.arange(len(shown))
    n_cells = len(shown) + (1 if len(shown) < len(classes) else 0)
    known = (true_at >= 0) & (pred_at >= 0)
    matrix = np.zeros((n_cells, n_cells), dtype=int)
    np.add.at(matrix, (cell[true_at[known]], cell[pred_at[known]]), 1)
    labels = [str(classes[i]) for i in shown] + (["(other)"] if n_cells > len(shown) else [])
    roc: list[Curve] = []
    pr: list[Curve] = []
    calibration: list[CalibrationCurve] = []
    if proba is not None:
        targets = [position[positive_class]] if len(classes) == 2 and positive_class in position else shown
        for at in targets:
            column = np.asarray(proba[:, at], dtype=float)
            hit = true_at == at
            pair = _curves(str(classes[at]), hit, column)
            if pair is not None:
                roc.append(pair[0])
                pr.append(pair[1])
            calibration.append(_calibration(str(classes[at]), hit.astype(float), column))
    return ClassifierPlots(
        kind="classifier",
        classes=labels,
        confusion=[[int(v) for v in row] for row in matrix],
        labels_from=labels_from,
        roc=roc,
        pr=pr,
        calibration=calibration,
    )


def regression_plots(
    y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray, seed: int
) -> RegressionPlots:
    """Actual and predicted values, a seeded sample of `MAX_POINTS` rows beyond that many."""
    actual, predicted = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    keep = np.arange(len(actual))
    if len(keep) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(len(actual), MAX_POINTS, replace=False))
    return RegressionPlots(
        kind="regression", actual=_floats(actual[keep]), predicted=_floats(predicted[keep]), shown=len(keep)
    )


def _plots(
    y_true: np.ndarray, pred: Predictions, problem: Problem, labels_from: Literal["model", "highest probability"]
) -> ClassifierPlots | RegressionPlots:
    if problem.task_type == "regression":
        return regression_plots(y_true, pred.y_pred, problem.seed)
    return classifier_plots(y_true, pred.y_pred, pred.proba, problem.classes, problem.positive_class, labels_from)


# ---------------------------------------------------------------------------------------------
# Permutation importance, bounded in time
# ---------------------------------------------------------------------------------------------


def _permuted_columns(X: pd.DataFrame, columns: Sequence[str], repeats: int, seed: int) -> Iterator[tuple[str, Any]]:
    """(column, shuffled values) for every column and repeat, with scikit-learn's draws.

    The draws of `sklearn.inspection.permutation_importance(random_state=seed)`: one seed drawn
    from `seed`, a fresh generator from it for each column, and each repeat shuffling the previous
    repeat's values again, so the importances equal the library's to the last digit.
    """
    column_seed = check_random_state(seed).randint(np.iinfo(np.int32).max + 1)
    for column in columns:
        draws = check_random_state(column_seed)
        order = np.arange(len(X))
        values = X[column].array  # .array keeps a categorical dtype
        for _ in range(repeats):
            draws.shuffle(order)
            values = values[order]
            yield column, values


def _blocks_per_call(n_rows: int, n_columns: int) -> int:
    """How many shuffled copies of an `n_rows` x `n_columns` frame one predict call takes."""
    return max(1, PREDICT_CELLS // max(1, n_rows * n_columns))


def _stacked(X: pd.DataFrame, blocks: Sequence[tuple[str | None, Any]]) -> pd.DataFrame:
    """X once per block, one under the other, each copy with its block's column replaced by the
    block's values (a block whose column is None is X as is).

    Why not a copy of X per block, concatenated: on a wide frame each copy with one column
    replaced is a frame of many blocks, and pandas spends quadratic time joining them.
    """
    if len(blocks) == 1 and blocks[0][0] is None:
        return X
    n, position = len(X), {name: i for i, name in enumerate(X.columns)}
    stacked = pd.concat([X] * len(blocks), ignore_index=True)
    for i, (column, values) in enumerate(blocks):
        if column is not None:  # pandas will not set a numpy-backed ExtensionArray into a numpy column
            plain = values.to_numpy() if isinstance(values, pd.arrays.NumpyExtensionArray) else values
            stacked.iloc[i * n : (i + 1) * n, position[column]] = plain
    return stacked


def permutation_importances(
    model: Any,
    X: pd.DataFrame,
    y: pd.Series,
    problem: Problem,
    columns: Sequence[str],
    *,
    max_rows: int = IMPORTANCE_ROWS,
    repeats: int = IMPORTANCE_REPEATS,
    seconds: float = IMPORTANCE_SECONDS,
) -> Importance:
    """How much the primary metric worsens when each of `columns` is shuffled, on at most
    `max_rows` rows: scikit-learn's `permutation_importance`, with its draws and its numbers.

    Why not call the library: it predicts once per column and repeat, and on a holdout of a few
    hundred rows a pipeline's cost per call, not per row, dominates: House Prices' 80 columns
    took 7.8 s for one repeat. Here the shuffled copies are stacked and predicted up to
    `PREDICT_CELLS` cells a call (a model's prediction of a row does not depend on the other rows).
    Only the columns the model reads are shuffled; the model still receives every column. A call's
    cost is measured first (fixed part and per row, stacking included); the repeats drop to what
    `seconds` allows, then the rows, never below one repeat of 200 rows, then the columns: a
    seeded sample of them is measured (on 400 rows x 3,000 columns, every column took 7 minutes).
    """
    metric = METRICS[problem.primary_metric]
    sign = 1.0 if metric.greater_is_better else -1.0
    rng = np.random.default_rng(problem.seed)
    if len(X) > max_rows:
        rows = np.sort(rng.choice(len(X), max_rows, replace=False))
        X, y = X.iloc[rows], y.iloc[rows]
    columns = [c for c in X.columns if c in set(columns)]
    columns_read = len(columns)

    def signed_scores(blocks: Sequence[tuple[str | None, Any]]) -> list[float]:
        """The signed metric of X with each block's column replaced by its values (None: X as is),
        from one predict call."""
        stacked = _stacked(X, blocks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = predict(model, stacked, problem.task_type, problem.classes, problem.positive_class)
        truth, n, values = np.asarray(y), len(X), []
        for i in range(len(blocks)):
            part = slice(i * n, (i + 1) * n)
            proba = None if pred.proba is None else pred.proba[part]
            value = metric(truth, dataclasses.replace(pred, y_pred=pred.y_pred[part], proba=proba))
            values.append(sign * value if math.isfinite(value) else 0.0)
        return values

    def timed(blocks: Sequence[tuple[str | None, Any]]) -> float:
        started = time.perf_counter()
        signed_scores(blocks)
        return time.perf_counter() - started

    probe = [(columns[0] if columns else None, X[columns[0]].array if columns else None)]
    single = min(timed(probe) for _ in range(2))  # the first call may pay for lazy imports and caches
    per_row = max(0.0, (timed(probe * 4) - single) / (3 * len(X)))
    fixed = max(single - per_row * len(X), 1e-4)

    def cost(n_rows: int, n_repeats: int, n_columns: int = len(columns)) -> float:
        blocks = n_columns * n_repeats
        return fixed * math.ceil(blocks / _blocks_per_call(n_rows, X.shape[1])) + per_row * n_rows * blocks

    repeats = max([1] + [r for r in range(1, repeats + 1) if cost(len(X), r) <= seconds])
    if cost(len(X), 1) > seconds and len(X) > 200:  # even one repeat is too slow: fewer rows
        keep = max([200] + [k for k in range(200, len(X), 50) if cost(k, 1) <= seconds])
        rows = np.sort(rng.choice(len(X), keep, replace=False))
        X, y = X.iloc[rows], y.iloc[rows]
    if len(columns) > 1 and cost(len(X), 1) > seconds:  # and still too slow: a sample of the columns
        fits = max([1] + [k for k in range(1, len(columns)) if cost(len(X), 1, k) <= seconds])
        measured = np.sort(rng.choice(len(columns), fits, replace=False))
        columns = [columns[i] for i in measured]

    baseline = signed_scores([(None, None)])[0]
    drops: dict[str, list[float]] = {c: [] for c in columns}
    batch: list[tuple[str | None, Any]] = []
    per_call = _blocks_per_call(len(X), X.shape[1])

    def flush() -> None:
        for (column, _), score in zip(batch, signed_scores(batch), strict=True):
            drops[str(column)].append(baseline - score)
        batch.clear()

    for column, values in _permuted_columns(X, columns, repeats, problem.seed):
        batch.append((column, values))
        if len(batch) >= per_call:
            flush()
    if batch:
        flush()
    means = np.array([np.mean(drops[c]) for c in columns])
    order = np.argsort(-means, kind="stable")
    return Importance(
        metric=problem.primary_metric,
        rows=len(X),
        repeats=repeats,
        columns_read=columns_read,
        features=[
            FeatureImportance(
                column=str(columns[i]),
                mean=round(float(means[i]), 6),
                std=round(float(np.std(drops[columns[i]])), 6),
            )
            for i in order
        ],
    )


# ---------------------------------------------------------------------------------------------
# The two sources
# ---------------------------------------------------------------------------------------------


def holdout_insight(
    model: Any,
    X_hold: pd.DataFrame,
    y_hold: pd.Series,
    problem: Problem,
    *,
    experiment_id: int,
    spec: Mapping[str, Any],
    importance_seconds: float = IMPORTANCE_SECONDS,
) -> ModelInsight:
    """The delivered model on the holdout: its plots and permutation importance. Delivery only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict(model, X_hold, problem.task_type, problem.classes, problem.positive_class)
    columns = sorted(referenced_columns(parse_spec(dict(spec))))
    return ModelInsight(
        source="holdout",
        experiment_id=experiment_id,
        rows=len(y_hold),
        plots=_plots(y_hold.to_numpy(), pred, problem, "model"),
        importance=permutation_importances(model, X_hold, y_hold, problem, columns, seconds=importance_seconds)
        if columns and len(y_hold) > 1
        else None,
    )


def oof_insight(
    cache_dir: Path, spec_hash: str, y_dev: pd.Series, problem: Problem, experiment_id: int
) -> ModelInsight | None:
    """A candidate's plots from its cached out-of-fold predictions (the first repeat of the
    folds, which predicts every development row once); None when nothing usable is cached."""
    oof = load_oof(cache_dir, spec_hash)
    if oof is None or oof.shape[1] != len(y_dev):
        return None
    first = oof[0]
    known = ~np.isnan(first).any(axis=1)
    y = y_dev.to_numpy()[known]
    first = first[known]
    if problem.task_type == "regression":
        pred = Predictions(y_pred=first[:, 0])
    elif first.shape[1] == len(problem.classes):
        pred = Predictions.from_proba(first, problem.classes, problem.positive_class)
    else:
        return None  # a classifier without probabilities: its cached labels are not comparable
    return ModelInsight(
        source="out-of-fold",
        experiment_id=experiment_id,
        rows=int(known.sum()),
        plots=_plots(y, pred, problem, "highest probability"),
        importance=None,
    )


# ---------------------------------------------------------------------------------------------
# What a spec is, in words
# ---------------------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    return str(value)


def _feature(op: Mapping[str, Any]) -> str:
    rest = ", ".join(f"{k}={_value(v)}" for k, v in op.items() if k != "op" and v not in (None, "", [], ()))
    return f"{op.get('op', '?')}({rest})"


_DEFAULT_SETTINGS = {"target_transform": "none", "class_weight": "none", "threshold": "default"}
_KNOWN_KEYS = {"kind", "columns", "features", "preprocessing", "model", *_DEFAULT_SETTINGS}


def describe_spec(spec: Mapping[str, Any]) -> list[PipelineStep]:
    """The steps of a spec in the order the built model applies them, each in one line."""
    if spec.get("kind") == "ensemble" or "members" in spec:
        weights = spec.get("weights")
        steps = [
            PipelineStep(
                step=f"{spec.get('method', 'voting')} ensemble",
                what=f"{len(spec['members'])} member pipelines"
                + (f", weights {_value(weights)}" if weights else ", equal weights")
                + (f" (experiments {_value(spec['member_ids'])})" if spec.get("member_ids") else ""),
            )
        ]
        for i, member in enumerate(spec["members"]):
            family, described = key_params(member)
            steps.append(PipelineStep(step=f"member {i + 1}", what=f"{family}: {described}"))
        return steps
    columns = spec.get("columns") or {}
    used = "; ".join(f"{kind.replace('_', '-')}: {', '.join(cols)}" for kind, cols in columns.items() if cols)
    steps = [PipelineStep(step="columns", what=used or "none")]
    if spec.get("features"):
        steps.append(PipelineStep(step="features", what="; ".join(_feature(op) for op in spec["features"])))
    pre = spec.get("preprocessing") or {}
    if pre:
        steps.append(PipelineStep(step="preprocessing", what=_value(pre)))
    extra = {k: v for k, v in spec.items() if k not in _KNOWN_KEYS and v not in (None, {}, [])}
    for name, value in extra.items():  # row filter, bagging and whatever a spec gains later
        steps.append(PipelineStep(step=name.replace("_", " "), what=_value(value)))
    model = spec.get("model") or {}
    params = model.get("params") or {}
    steps.append(
        PipelineStep(
            step="model",
            what=f"{model.get('family', '?')}"
            + (f" with {_value(params)}" if params else " with its default parameters")
            + (" (the rest at their defaults)" if params else ""),
        )
    )
    for name, default in _DEFAULT_SETTINGS.items():
        if spec.get(name, default) != default:
            steps.append(PipelineStep(step=name.replace("_", " "), what=_value(spec[name])))
    return steps


def key_params(spec: Mapping[str, Any] | None) -> tuple[str, str]:
    """(family, key parameters) of a spec in a few words, for a leaderboard row."""
    if not spec:
        return "–", ""
    if spec.get("kind") == "ensemble" or "members" in spec:
        families = ", ".join(str((m.get("model") or {}).get("family", "?")) for m in spec["members"])
        ids = spec.get("member_ids")
        weights = spec.get("weights")
        what = (f"of #{', #'.join(str(i) for i in ids)}" if ids else f"of {families}") + (
            f"; weights {_value(weights)}" if weights else ""
        )
        return f"{spec.get('method', 'voting')} ({families})", what
    model = spec.get("model") or {}
    parts = [f"{k}={_value(v)}" for k, v in (model.get("params") or {}).items()]
    for name, default in _DEFAULT_SETTINGS.items():
        if spec.get(name, default) != default:
            parts.append(f"{name}={_value(spec[name])}")
    defaults = Preprocessing().model_dump(mode="json")
    for name, value in (spec.get("preprocessing") or {}).items():
        if name in defaults and value != defaults[name]:
            parts.append(f"{name}={_value(value)}")
    if spec.get("features"):
        parts.append(f"+{len(spec['features'])} feature op{'s' if len(spec['features']) > 1 else ''}")
    for name in sorted(set(spec) - _KNOWN_KEYS):
        if spec[name] not in (None, {}, []):
            parts.append(f"{name}: {_value(spec[name])}")
    return str(model.get("family", "?")), "; ".join(parts) or "default parameters"


__all__ = [
    "INSIGHT_FILE",
    "ClassifierPlots",
    "ModelInsight",
    "PipelineStep",
    "RegressionPlots",
    "classifier_plots",
    "describe_spec",
    "holdout_insight",
    "key_params",
    "oof_insight",
    "permutation_importances",
    "regression_plots",
]
