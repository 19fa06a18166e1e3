"""One registry of metrics: their values and their direction come from here and never from an agent.

Every number the environment reports is computed by a function in `METRICS` from true labels and
predictions; whether higher is better is a property of the metric, so no agent can misread or
reorient a score (the failure AIDE's users hit most). `gain` turns two scores into a signed
improvement that is positive when the candidate is better, whatever the metric's direction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

from tandem.tools.spec import CLASSIFICATION


class MetricError(ValueError):
    """An unknown metric, or one that does not fit the task."""


@dataclass(frozen=True)
class Predictions:
    """What a fitted model said about some rows: labels or values, and class probabilities."""

    y_pred: np.ndarray
    proba: np.ndarray | None = None  # (n, n_classes) in the order of `classes`
    classes: tuple[Any, ...] = ()
    pos_label: Any = None

    @classmethod
    def from_proba(cls, proba: np.ndarray, classes: Sequence[Any], pos_label: Any = None) -> Predictions:
        """Probabilities with the most probable class as the label.

        The labels keep the classes' own dtype: an object array of integer labels is a target type
        scikit-learn's metrics reject ("a mix of binary and unknown targets"), so every score of a
        blend on 0/1 labels would be NaN.
        """
        labels = np.asarray(classes)[np.argmax(proba, axis=1)]
        return cls(y_pred=labels, proba=proba, classes=tuple(classes), pos_label=pos_label)


Scorer = Callable[[np.ndarray, Predictions], float]


@dataclass(frozen=True)
class Metric:
    name: str
    tasks: frozenset[str]
    greater_is_better: bool
    fn: Scorer
    description: str
    #: Scores live on a fixed [0, 1]-like scale; otherwise gains are taken relative to the incumbent.
    bounded: bool = True
    needs_proba: bool = False

    def __call__(self, y_true: np.ndarray, pred: Predictions) -> float:
        return float(self.fn(y_true, pred))


def _positive_proba(pred: Predictions) -> np.ndarray:
    assert pred.proba is not None
    return pred.proba[:, list(pred.classes).index(pred.pos_label)]


def _roc_auc(y: np.ndarray, p: Predictions) -> float:
    if len(p.classes) == 2:
        return skm.roc_auc_score(y == p.pos_label, _positive_proba(p))
    return skm.roc_auc_score(y, p.proba, multi_class="ovr", labels=list(p.classes))


def _log_loss(y: np.ndarray, p: Predictions) -> float:
    return skm.log_loss(y, p.proba, labels=list(p.classes))


def _average_precision(y: np.ndarray, p: Predictions) -> float:
    if len(p.classes) == 2:
        return skm.average_precision_score(y == p.pos_label, _positive_proba(p))
    onehot = np.asarray(y)[:, None] == np.asarray(p.classes)[None, :]
    return skm.average_precision_score(onehot, p.proba, average="macro")


def _binary_or_macro(fn: Callable[..., float]) -> Scorer:
    def score(y: np.ndarray, p: Predictions) -> float:
        if len(p.classes) == 2:
            return fn(y, p.y_pred, pos_label=p.pos_label, zero_division=0)
        return fn(y, p.y_pred, average="macro", zero_division=0)

    return score


def _rmsle(y: np.ndarray, p: Predictions) -> float:
    return float(np.sqrt(skm.mean_squared_log_error(y, np.clip(p.y_pred, 0, None))))


_BIN = frozenset({"binary"})
_CLS = CLASSIFICATION
_REG = frozenset({"regression"})

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", _CLS, True, lambda y, p: skm.accuracy_score(y, p.y_pred), "share of rows right"),
        Metric(
            "balanced_accuracy",
            _CLS,
            True,
            lambda y, p: skm.balanced_accuracy_score(y, p.y_pred),
            "mean recall over classes",
        ),
        Metric("precision", _CLS, True, _binary_or_macro(skm.precision_score), "positive class (macro if multiclass)"),
        Metric("recall", _CLS, True, _binary_or_macro(skm.recall_score), "positive class (macro if multiclass)"),
        Metric("f1", _BIN, True, _binary_or_macro(skm.f1_score), "F1 of the positive class"),
        Metric(
            "f1_macro",
            _CLS,
            True,
            lambda y, p: skm.f1_score(y, p.y_pred, average="macro", zero_division=0),
            "unweighted mean F1 over classes",
        ),
        Metric("roc_auc", _CLS, True, _roc_auc, "ROC-AUC (one-vs-rest macro for multiclass)", needs_proba=True),
        Metric("log_loss", _CLS, False, _log_loss, "cross-entropy of the probabilities", False, True),
        Metric("average_precision", _CLS, True, _average_precision, "area under precision-recall", needs_proba=True),
        Metric("mcc", _CLS, True, lambda y, p: skm.matthews_corrcoef(y, p.y_pred), "Matthews correlation"),
        Metric(
            "rmse", _REG, False, lambda y, p: skm.root_mean_squared_error(y, p.y_pred), "root mean squared error", False
        ),
        Metric("mae", _REG, False, lambda y, p: skm.mean_absolute_error(y, p.y_pred), "mean absolute error", False),
        Metric("r2", _REG, True, lambda y, p: skm.r2_score(y, p.y_pred), "coefficient of determination"),
        Metric(
            "mape",
            _REG,
            False,
            lambda y, p: skm.mean_absolute_percentage_error(y, p.y_pred),
            "mean absolute percentage error",
            False,
        ),
        Metric("rmsle", _REG, False, _rmsle, "RMSE of log1p values (needs a non-negative target)", False),
    )
}

DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("f1_macro", "accuracy", "roc_auc", "log_loss"),
    "multiclass": ("f1_macro", "accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


def resolve_metrics(names: Sequence[str] | None, primary: str | None, task_type: str) -> tuple[tuple[str, ...], str]:
    """Check the user's metric choice against the task; return (metrics, primary) with primary first.

    Defaults (README.md, the `--metrics` option): F1 macro first for classification, RMSE for regression.
    """
    chosen = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip())) if names else ()
    if primary:
        primary = primary.strip().lower()
    if not chosen:
        chosen = DEFAULT_METRICS[task_type]
        if primary and primary not in chosen:
            chosen = (primary, *chosen)
    for name in (*chosen, *([primary] if primary else [])):
        metric = METRICS.get(name)
        if metric is None:
            raise MetricError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        if task_type not in metric.tasks:
            fitting = [n for n, m in METRICS.items() if task_type in m.tasks]
            raise MetricError(f"metric {name!r} does not fit a {task_type} task; use one of {', '.join(fitting)}")
    primary = primary or chosen[0]
    if primary not in chosen:
        chosen = (primary, *chosen)
    return (primary, *(m for m in chosen if m != primary)), primary


def score_all(names: Sequence[str], y_true: np.ndarray, pred: Predictions) -> dict[str, float]:
    """Every requested metric on the same predictions; a metric that cannot be computed is NaN."""
    scores = {}
    for name in names:
        try:
            scores[name] = METRICS[name](y_true, pred)
        except ValueError:
            scores[name] = float("nan")
    return scores


def gain(metric: str, candidate: float, incumbent: float) -> float:
    """Signed improvement of `candidate` over `incumbent`: positive means better, in metric units."""
    diff = candidate - incumbent
    return diff if METRICS[metric].greater_is_better else -diff


def reward_scale(metric: str, incumbent: float) -> float:
    """Divisor that puts gains of different metrics on one footing for rewards.

    Bounded metrics (accuracy, F1, AUC, R²…) use their own units; unbounded ones (RMSE, MAE,
    log-loss…) use the gain relative to the incumbent, so a reward means the same on any data.
    """
    if METRICS[metric].bounded:
        return 1.0
    return max(abs(incumbent), 1e-12)


def better(metric: str, a: float, b: float) -> bool:
    """True when score `a` is strictly better than score `b`."""
    return gain(metric, a, b) > 0
