"""Does tandem's power transform change a stored bench's cross-validation scores?

tandem's `numeric_transform: power` runs `tools/yeo_johnson.py: YeoJohnsonScaler` in place of
scikit-learn's `PowerTransformer`. This script takes every successful single-pipeline experiment
with that transform in the tandem runs of a stored bench (their ledgers, `experiments.jsonl`, are
committed with the published store), rebuilds each run's development part and folds (the bench's
own split of the task at the run's seed), and cross-validates the experiment's spec twice on
those folds, in this process: once with each transformer. It prints one JSON line per experiment,
then how many scores are identical, the largest relative changes, and the total CV time of each.

    .venv/bin/python scripts/power_transform_ledgers.py BENCH_ID [--results-dir benchmarks/results]

It takes about half an hour on 2 cores for the published bench (271 experiments).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from sklearn.preprocessing import PowerTransformer

import tandem.tools.builder as builder
from tandem.benchmarks.results_store import ResultsStore
from tandem.benchmarks.tasks import default_suite, materialize
from tandem.graph.persistence import problem_of
from tandem.tools.data import read_table
from tandem.tools.metrics import METRICS
from tandem.tools.spec import parse_spec
from tandem.tools.training import evaluate_spec, make_split

ROOT = Path(__file__).resolve().parents[1]
TRANSFORMERS = {"scikit-learn": PowerTransformer, "tandem": builder.YeoJohnsonScaler}


def uses_power(record: dict[str, Any]) -> bool:
    spec = record["spec"] or {}
    return (
        record["status"] == "ok"
        and spec.get("kind") == "pipeline"
        and (spec.get("preprocessing") or {}).get("numeric_transform") == "power"
    )


def compare(results: Path, bench: str) -> list[dict[str, Any]]:
    games = ResultsStore(results).tandem_runs(bench)
    if not games:
        sys.exit(f"power_transform_ledgers: no tandem games of bench {bench} in {results}")
    suite = {task.name: task for task in default_suite()}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as cache:
        for task_name, seed, folder in games:
            ledger = [json.loads(line) for line in (folder / "experiments.jsonl").read_text().splitlines() if line]
            power = [r for r in ledger if uses_power(r)]
            if not power:
                continue
            task = json.loads((folder / "summary.json").read_text())["task"]
            target = task["target"]
            dev = read_table(materialize(suite[task_name], cache, seed).dev_csv, keep=[target])
            split = make_split(
                dev[target],
                task["task_type"],
                holdout=0.2,
                folds=task["folds"],
                seed=task["seed"],
                external_holdout="file",
            )
            rows_of_dev = list(split.dev_rows)
            X, y = dev.drop(columns=[target]).loc[rows_of_dev], dev[target].loc[rows_of_dev]
            problem = problem_of(task)
            for record in power:
                row: dict[str, Any] = {
                    "task": task_name,
                    "seed": seed,
                    "experiment": record["id"],
                    "move": record["move"],
                }
                row["metric"] = problem.primary_metric
                for name, transformer in TRANSFORMERS.items():
                    builder.YeoJohnsonScaler = transformer  # type: ignore[misc]  # n_jobs=1: folds run here
                    started = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        result = evaluate_spec(parse_spec(record["spec"]), X, y, split.fold_matrix(), problem, n_jobs=1)
                    row[name] = result.cv.get(problem.primary_metric, float("nan"))
                    row[f"{name} seconds"] = round(time.perf_counter() - started, 2)
                builder.YeoJohnsonScaler = TRANSFORMERS["tandem"]  # type: ignore[misc]
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def relative_gain(row: dict[str, Any]) -> float:
    """tandem's score over scikit-learn's, signed so that positive is better."""
    sign = 1.0 if METRICS[row["metric"]].greater_is_better else -1.0
    return sign * (row["tandem"] - row["scikit-learn"]) / max(abs(row["scikit-learn"]), 1e-12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench")
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    rows = compare(Path(args.results_dir), args.bench)
    differ = sorted((r for r in rows if r["tandem"] != r["scikit-learn"]), key=lambda r: -abs(relative_gain(r)))
    tasks = len({r["task"] for r in rows})
    print(f"{len(rows)} experiments on {tasks} tasks: {len(rows) - len(differ)} identical CV scores")
    print(f"{len(differ)} differ; tandem's better on {sum(relative_gain(r) > 0 for r in differ)}; the largest changes:")
    for r in differ[:5]:
        print(f"  {r['task']} seed {r['seed']} #{r['experiment']} ({r['move']}): {100 * relative_gain(r):+.3f}%")
    for name in TRANSFORMERS:
        print(f"CV time with {name}'s transform: {sum(r[f'{name} seconds'] for r in rows):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
