"""Ensemble selection (Caruana et al., 2004) on the out-of-fold predictions the environment saved.

Every candidate's cross-validation leaves its out-of-fold predictions in the run's cache (one
prediction per development row and repeat, from a model that never saw the row). Greedy forward
selection with replacement adds, one round at a time, the model whose addition makes the
averaged predictions score best, and the number of times each model was added becomes its
weight. This is how AutoGluon builds its weighted ensemble. It chooses members and weights
without training anything; the soft-voting ensemble it names is then cross-validated like any
other candidate, on the same folds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tandem.tools.metrics import METRICS, Predictions, gain
from tandem.tools.training import TIE_BREAK_METRIC, Problem


@dataclass(frozen=True)
class Selection:
    """Chosen experiments and their weights (times chosen), with the blend's out-of-fold score."""

    weights: dict[int, int]
    score: float
    rounds: int


def blend_score(oof: np.ndarray, y: np.ndarray, problem: Problem, metric: str | None = None) -> float:
    """A metric on averaged out-of-fold predictions of shape (repeats, rows, columns), all repeats
    pooled (each row counted once per repeat)."""
    name = metric or problem.primary_metric
    repeats = oof.shape[0]
    flat = oof.reshape(-1, oof.shape[-1])
    y_all = np.tile(np.asarray(y), repeats)
    if problem.task_type == "regression":
        pred = Predictions(y_pred=flat[:, 0])
    else:
        proba = np.clip(flat, 0.0, 1.0)
        proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
        pred = Predictions.from_proba(proba, problem.classes, problem.positive_class)
    try:
        return float(METRICS[name](y_all, pred))
    except ValueError:
        return float("nan")


ENSEMBLE_POOL = 8
"""Ensemble selection chooses among the best this many single pipelines (an ensemble's limit)."""
SELECTION_ROWS = 50_000
"""Rows the greedy rounds score on: a seeded sample of the development rows when there are more."""


def select_ensemble(
    oofs: Mapping[int, np.ndarray], y: np.ndarray, problem: Problem, *, rounds: int = 25
) -> Selection | None:
    """Greedy forward selection with replacement over `oofs` (experiment id → out-of-fold array).

    Each round adds the model that gives the best primary score (ties: the lower log-loss for a
    classifier, then the lower experiment id); after `rounds` rounds the best prefix is kept
    (the earliest on ties, so the fewest additions). None when fewer than two models are usable
    or the best blend is a single model.

    Why a sample of rows on large data: the rounds score rounds × models blends with scikit-learn's
    metrics, about 40 s on 800,000 rows, spent by the Scientist between two experiments. Weights
    chosen on `SELECTION_ROWS` seeded rows are as good a guess; the blend they name is then
    cross-validated on every row, and the score returned here is the chosen blend's on every row.
    """
    usable = {
        i: np.asarray(a, dtype=float)
        for i, a in sorted(oofs.items())
        if a is not None and np.isfinite(a).all() and a.shape == next(iter(oofs.values())).shape
    }
    if len(usable) < 2:
        return None
    everything, y_all = usable, np.asarray(y)
    if len(y_all) > SELECTION_ROWS:
        rows = np.sort(np.random.default_rng(problem.seed).choice(len(y_all), SELECTION_ROWS, replace=False))
        usable, y = {i: a[:, rows] for i, a in usable.items()}, y_all[rows]
    metric = problem.primary_metric
    tie = TIE_BREAK_METRIC if problem.task_type != "regression" else None

    def key(blend: np.ndarray) -> tuple[float, float]:
        primary = blend_score(blend, y, problem)
        primary = gain(metric, primary, 0.0) if np.isfinite(primary) else -np.inf
        secondary = -blend_score(blend, y, problem, tie) if tie else 0.0
        return primary, secondary if np.isfinite(secondary) else -np.inf

    total = np.zeros_like(next(iter(usable.values())))
    chosen: list[int] = []
    history: list[tuple[tuple[float, float], int]] = []
    for _ in range(rounds):
        best_id, best_key = None, None
        for i, oof in usable.items():
            k = key((total + oof) / (len(chosen) + 1))
            if best_key is None or k > best_key:
                best_id, best_key = i, k
        assert best_id is not None and best_key is not None
        chosen.append(best_id)
        total = total + usable[best_id]
        history.append((best_key, len(chosen)))
    best_key, size = max(history, key=lambda h: (h[0], -h[1]))
    weights = dict(sorted(Counter(chosen[:size]).items()))
    if len(weights) < 2:
        return None
    blend = sum(everything[i] * w for i, w in weights.items()) / size
    return Selection(weights=weights, score=blend_score(np.asarray(blend), y_all, problem), rounds=size)


__all__ = ["ENSEMBLE_POOL", "SELECTION_ROWS", "Selection", "blend_score", "select_ensemble"]
