"""Why House Prices stops near R² 0.90 on MLGym's split, and what cross-validation can see of the rest.

The issue's goal is R² 0.935 on MLGym's test part; DESIGN.md section 8 names the recipe that
reached 0.936 (a log target, training-only removal of extreme-leverage rows, power-transformed
numerics, a blend of regularised linear models and boosting). tandem's runs deliver LightGBM near
0.90 and never a linear model or a linear + boosting blend, because no such candidate wins on
the folds. This script asks why, on the run's own protocol: the development part, the run's
repeated folds (`make_split`, 3 × 5 below 2,000 rows), tandem's own pipelines (`build_pipeline`)
and its significance rule (`compare`, the corrected repeated-fold t), for

- the linear line as tandem builds it (clipped to the training range), and the same with its
  numeric inputs clipped to the training fold's 1st and 99th percentiles (winsorised: an option
  tandem does not have yet);
- each of them with the training-only row filter tandem has (`RowFilter`, 1% largest residuals);
- LightGBM with the log target, with and without the row filter;
- equal-weight blends of a linear line and LightGBM, from the same fold predictions.

MLGym's test part is scored here only to show what the folds could and could not see; nothing of
it reaches a choice. Writes docs/house-prices-study.md. Reproduce:

    .venv/bin/python scripts/house_prices_study.py
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline

from tandem.benchmarks.tasks import materialize, select_tasks
from tandem.graph.context import RewardConfig
from tandem.graph.reward_rules import compare
from tandem.nodes.setup import LOW_CARDINALITY
from tandem.tools.builder import build_pipeline
from tandem.tools.profile import profile_dataset
from tandem.tools.spec import Columns, ModelSpec, PipelineSpec, RowFilter
from tandem.tools.training import make_split

ROOT = Path(__file__).resolve().parents[1]
WINSOR_SHARE = 0.01
GOAL = 0.935
AREA = "GrLivArea"


class Winsorizer(TransformerMixin, BaseEstimator):
    """Clip the named numeric columns to the [share, 1 − share] quantiles of the rows it was fitted on."""

    def __init__(self, columns: tuple[str, ...] = (), share: float = WINSOR_SHARE) -> None:
        self.columns = columns
        self.share = share

    def fit(self, X: pd.DataFrame, y: Any = None) -> Winsorizer:
        values = X[list(self.columns)].astype(float)
        self.low_ = values.quantile(self.share)
        self.high_ = values.quantile(1.0 - self.share)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        out[list(self.columns)] = X[list(self.columns)].astype(float).clip(self.low_, self.high_, axis=1)
        return out


@dataclass(frozen=True)
class Candidate:
    name: str
    spec: PipelineSpec
    winsorize: bool = False

    def estimator(self) -> Any:
        model = build_pipeline(self.spec, "regression", primary_metric="r2")
        if not self.winsorize:
            return model
        return Pipeline([("winsorize", Winsorizer(self.spec.columns.numeric)), ("model", model)])


@dataclass
class Scored:
    name: str
    folds: list[float]
    oof: np.ndarray  # (repeats, rows): every repeat's out-of-fold predictions
    holdout: np.ndarray


def candidates(X: pd.DataFrame, y: pd.Series) -> dict[str, Candidate]:
    """The run's columns (low-cardinality categoricals one-hot, the others target-encoded)."""
    profile = profile_dataset(pd.concat([X, y], axis=1), str(y.name), "regression")
    usable = [c for c in profile.usable() if c.kind in {"numeric", "boolean", "categorical"}]
    numeric = tuple(c.name for c in usable if c.kind != "categorical" and pd.api.types.is_numeric_dtype(X[c.name]))
    rest = [c for c in usable if c.name not in numeric]
    columns = Columns(
        numeric=numeric,
        categorical=tuple(c.name for c in rest if c.n_unique <= LOW_CARDINALITY),
        high_cardinality=tuple(c.name for c in rest if c.n_unique > LOW_CARDINALITY),
    )
    ridge = PipelineSpec(columns=columns, model=ModelSpec(family="ridge"), target_transform="log")
    boosting = PipelineSpec(columns=columns, model=ModelSpec(family="lightgbm"), target_transform="log")
    filtered = RowFilter(method="target_residual", share=0.01)
    ridge_filtered = ridge.model_copy(update={"row_filter": filtered})
    return {
        "linear": Candidate("ridge, log target (tandem's linear line)", ridge),
        "winsorised": Candidate("ridge, log target, winsorised", ridge, winsorize=True),
        "linear filtered": Candidate("ridge, log target, row filter", ridge_filtered),
        "winsorised filtered": Candidate("ridge, log target, winsorised, row filter", ridge_filtered, winsorize=True),
        "boosting": Candidate("lightgbm, log target", boosting),
        "boosting filtered": Candidate(
            "lightgbm, log target, row filter", boosting.model_copy(update={"row_filter": filtered})
        ),
    }


def fold_scores(oof: np.ndarray, y: pd.Series, folds: np.ndarray) -> list[float]:
    """R² of every fold, repeat by repeat, from the out-of-fold predictions (the order `compare` expects)."""
    return [
        float(r2_score(y[assignment == k], oof[repeat, assignment == k]))
        for repeat, assignment in enumerate(folds)
        for k in range(int(assignment.max()) + 1)
    ]


def score(candidate: Candidate, X: pd.DataFrame, y: pd.Series, folds: np.ndarray, X_test: pd.DataFrame) -> Scored:
    oof = np.empty(folds.shape, dtype=float)
    for repeat, assignment in enumerate(folds):
        for k in range(int(assignment.max()) + 1):
            train, valid = assignment != k, assignment == k
            oof[repeat, valid] = clone(candidate.estimator()).fit(X[train], y[train]).predict(X[valid])
    final = clone(candidate.estimator()).fit(X, y)
    return Scored(candidate.name, fold_scores(oof, y, folds), oof, np.asarray(final.predict(X_test), dtype=float))


def blend(a: Scored, b: Scored, y: pd.Series, folds: np.ndarray) -> Scored:
    oof = (a.oof + b.oof) / 2.0
    return Scored(f"blend: {a.name} + {b.name}", fold_scores(oof, y, folds), oof, (a.holdout + b.holdout) / 2.0)


def worst_row(r: Scored, X: pd.DataFrame, y: pd.Series, folds: np.ndarray) -> str:
    """The row that costs most squared error in the candidate's worst fold, and its share of that fold's error."""
    k = int(folds[0].max()) + 1
    worst = int(np.argmin(r.folds))
    repeat, fold = divmod(worst, k)
    rows = np.flatnonzero(folds[repeat] == fold)
    errors = (y.to_numpy()[rows] - r.oof[repeat, rows]) ** 2
    top = rows[int(np.argmax(errors))]
    return (
        f"one house ({X.loc[top, AREA]:,.0f} square feet of living area, sold for {y[top]:,.0f}, "
        f"predicted {r.oof[repeat, top]:,.0f}) makes {errors.max() / errors.sum():.0%} of that fold's squared error"
    )


def page(
    by_key: dict[str, Scored],
    data: tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series],
    folds: np.ndarray,
    seconds: float,
) -> str:
    X, y, X_test, y_test = data
    rows, reference = list(by_key.values()), by_key["boosting"]
    config = RewardConfig()
    k = int(folds[0].max()) + 1
    test = {r.name: float(r2_score(y_test, r.holdout)) for r in rows}

    def t_against_reference(r: Scored) -> str:
        if r is reference:
            return "–"
        c = compare("r2", r.folds, reference.folds, config, folds_per_repeat=k)
        return f"{c.t_stat:+.2f}{' (significant)' if c.significant else ''}"

    def folds_won(r: Scored) -> int:
        return sum(a > b for a, b in zip(r.folds, reference.folds, strict=True))

    lines = [
        "# House Prices: what the folds can see",
        "",
        f"Generated by `scripts/house_prices_study.py` on {date.today().isoformat()} "
        f"({platform.machine()}, {seconds:.0f} s). MLGym's split: {len(reference.oof[0])} development rows, "
        f"{len(y_test)} test rows; the run's folds ({len(folds)} × {k}, seed 0); every candidate is one of "
        "tandem's pipelines (`build_pipeline`), the winsorised ones behind a clip to the training fold's "
        f"{WINSOR_SHARE:.0%} and {1 - WINSOR_SHARE:.0%} quantiles. t is tandem's significance statistic "
        f"against `{reference.name}` (corrected for repeated folds; significant at t ≥ {config.significance_t}). "
        "The test column is read only here, never by a run.",
        "",
        f"| candidate | CV R² (mean) | median fold | worst fold | folds won of {len(reference.folds)} "
        "| t against LightGBM | MLGym test R² |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        won = "–" if r is reference else str(folds_won(r))
        lines.append(
            f"| {r.name} | {np.mean(r.folds):.4f} | {np.median(r.folds):.4f} | {min(r.folds):.4f} | {won} | "
            f"{t_against_reference(r)} | {test[r.name]:.4f} |"
        )
    plain, winsorised, filtered = by_key["linear"], by_key["winsorised"], by_key["winsorised filtered"]
    best_cv = max(rows, key=lambda r: np.mean(r.folds))
    best_test = max(rows, key=lambda r: test[r.name])
    best_t = compare("r2", best_test.folds, reference.folds, config, folds_per_repeat=k)
    lines += [
        "",
        "## What it shows",
        "",
        f"- The linear line as tandem builds it has a worst fold of {min(plain.folds):.4f} "
        f"(mean {np.mean(plain.folds):.4f}, median {np.median(plain.folds):.4f}): the fold R² is unbounded "
        f"below, and in that fold {worst_row(plain, X, y, folds)}. "
        f"Winsorised, its worst fold is {min(winsorised.folds):.4f} and its mean {np.mean(winsorised.folds):.4f}.",
        f"- The best candidate by mean CV R² is `{best_cv.name}` (CV {np.mean(best_cv.folds):.4f}, "
        f"test {test[best_cv.name]:.4f}); the best on MLGym's test part is `{best_test.name}` "
        f"(CV {np.mean(best_test.folds):.4f}, test {test[best_test.name]:.4f}; the goal is {GOAL}). "
        f"It wins {folds_won(best_test)} of {len(reference.folds)} folds against LightGBM, and its t is "
        f"{best_t.t_stat:+.2f}: by the run's rule it "
        f"{'replaces' if best_t.significant and best_t.gain > 0 else 'cannot replace'} LightGBM.",
        f"- The training-only row filter moves the winsorised linear line's test R² by "
        f"{test[filtered.name] - test[winsorised.name]:+.4f} and its mean CV R² by "
        f"{np.mean(filtered.folds) - np.mean(winsorised.folds):+.4f}: the rows it leaves out of training "
        "are still scored in their validation folds. The development part holds "
        f"{int((X[AREA] > 4000).sum())} houses above 4,000 square feet of living area, MLGym's test part "
        f"{int((X_test[AREA] > 4000).sum())}. "
        "What the test part rewards is the data's documentation, not the folds: De Cock, who published "
        "the data, advises removing the houses above 4,000 square feet (three of his five are partial "
        "sales that do not reflect market value). A run that decides on the folds alone cannot see that gain.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "house-prices-study.md"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        X, y, X_test, y_test = materialize(select_tasks("house_prices")[0], cache).load()
    X, y = X.reset_index(drop=True), y.reset_index(drop=True)
    folds = make_split(y, "regression", holdout=0.0, folds=5, seed=0, external_holdout="test").fold_matrix()
    scored: dict[str, Scored] = {}
    for key, candidate in candidates(X, y).items():
        scored[key] = score(candidate, X, y, folds, X_test)
        print(f"{candidate.name}: CV {np.mean(scored[key].folds):.4f}", flush=True)
    for linear, boosting in [
        ("linear", "boosting"),
        ("winsorised", "boosting"),
        ("winsorised filtered", "boosting filtered"),
    ]:
        scored[f"{linear} + {boosting}"] = blend(scored[linear], scored[boosting], y, folds)
    Path(args.out).write_text(page(scored, (X, y, X_test, y_test), folds, time.perf_counter() - started))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
