"""Fit AutoGluon on a benchmark task's development rows and write its holdout predictions.

Run by the `autogluon` benchmark player (benchmarks/players.py) with the Python of AutoGluon's
own venv (`make autogluon`): AutoGluon 1.6 needs pandas < 2.4 and tandem runs pandas 3, so the
two cannot share an interpreter. This file therefore imports nothing from tandem; it is handed
files and writes a file, and tandem scores the predictions with its own metric code. The
settings are the issue's: `best_quality`, the task's time budget, the tree models only (the venv
has no torch, so AutoGluon skips its neural networks itself), and nothing downloaded.

    python autogluon_runner.py --train dev.csv --test holdout_X.csv --target y --problem-type binary \\
        --eval-metric f1_macro --time-limit 60 --seed 0 --out predictions.csv --path model_dir
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

#: tandem's metric names, as AutoGluon calls them.
EVAL_METRICS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "f1",
    "f1_macro": "f1_macro",
    "roc_auc": "roc_auc",
    "log_loss": "log_loss",
    "average_precision": "average_precision",
    "mcc": "mcc",
    "rmse": "root_mean_squared_error",
    "mae": "mean_absolute_error",
    "r2": "r2",
    "mape": "mean_absolute_percentage_error",
    "rmsle": "root_mean_squared_error",  # AutoGluon has no RMSLE: the nearest squared-error scorer
}

DYSTACK_MIN_SECONDS = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--problem-type", required=True, choices=("binary", "multiclass", "regression"))
    parser.add_argument("--eval-metric", required=True)
    parser.add_argument("--positive-class", default=None)
    parser.add_argument("--time-limit", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--out", required=True)
    parser.add_argument("--path", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model weights: fail rather than download

    # AutoGluon exists only in its own venv: importing it at the top would break tandem's own import of this file
    import autogluon.tabular  # type: ignore[import-not-found]
    import numpy as np
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    classify = args.problem_type != "regression"
    train = pd.read_csv(args.train, dtype={args.target: str} if classify else None)
    test = pd.read_csv(args.test)
    np.random.seed(args.seed)
    started = time.perf_counter()
    predictor = TabularPredictor(
        label=args.target,
        problem_type=args.problem_type,
        eval_metric=EVAL_METRICS.get(args.eval_metric, args.eval_metric),
        path=args.path,
        verbosity=0,
        **({"positive_class": args.positive_class} if args.problem_type == "binary" and args.positive_class else {}),
    )
    predictor.fit(
        train,
        presets="best_quality",
        time_limit=args.time_limit,
        num_cpus=args.cpus,
        num_gpus=0,
        ag_args_ensemble={"model_random_seed": args.seed},  # the fold models' seeds start here
        # DyStack spends a quarter of the budget on a trial stack first; below a minute that
        # quarter fits no model on a loaded 2-core machine and AutoGluon 1.6.3 then fails outright
        # ("Learner is already fit"), so short budgets stack directly, as best_quality would after it.
        **({"dynamic_stacking": False} if args.time_limit < DYSTACK_MIN_SECONDS else {}),
    )
    fit_seconds = time.perf_counter() - started
    out = pd.DataFrame({"prediction": predictor.predict(test).to_numpy()})
    if classify:
        proba = predictor.predict_proba(test)
        for column in proba.columns:
            out[f"proba::{column}"] = proba[column].to_numpy()
    out.to_csv(args.out, index=False)
    board = predictor.leaderboard(silent=True)
    info = {
        "fit_seconds": round(fit_seconds, 3),
        "best_model": str(predictor.model_best),
        "models": len(board),
        "autogluon": autogluon.tabular.__version__,
    }
    with open(args.out + ".json", "w", encoding="utf-8") as handle:
        json.dump(info, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
