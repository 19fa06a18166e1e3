"""What the report about the model costs a run: the page after each experiment and the insight at delivery.

The reward node rewrites report.html after every experiment (charged to the run's time budget,
as every node's working time is), and delivery computes the holdout plots and the permutation
importance once. Both are timed here on real runs (binary, multiclass, regression) outside the
graph, on the run folders the runs left, so the numbers are the functions' own:

- `progress first`: the page when the incumbent is new (its out-of-fold plots are drawn);
- `progress again`: the page when the incumbent is unchanged (its plots come from the cache);
- `holdout insight`: plots and permutation importance of the delivered experiment (bounded at
  `IMPORTANCE_SECONDS`), as delivery computes them;
- `delivered page`: the delivered report rendered from the saved values.

    .venv/bin/python scripts/report_cost.py     # about 2 minutes on 2 CPUs; prints one line per run
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from tandem.api import run_task
from tandem.graph.context import RunContext
from tandem.graph.persistence import dev_data, holdout_data, problem_of, run_folder
from tandem.graph.state import TaskInfo
from tandem.nodes import reports
from tandem.nodes.reports import load_insight, write_progress_report
from tandem.tools import report_html
from tandem.tools.model_insight import IMPORTANCE_SECONDS, holdout_insight
from tandem.tools.report_html import render_html
from tandem.tools.spec import parse_spec
from tandem.tools.training import fit_final

ROOT = Path(__file__).resolve().parents[1]


def frames(rng: np.random.Generator) -> dict[str, tuple[pd.DataFrame | Path, str]]:
    x = rng.normal(size=(1500, 4))
    colour = rng.choice(["red", "green", "blue"], size=1500)
    table = pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(colour=colour)
    signal = x[:, 0] - x[:, 1] + (colour == "red")
    return {
        "binary": (table.assign(label=np.where(signal + rng.normal(size=1500) > 0, "yes", "no")), "label"),
        "multiclass": (ROOT / "examples" / "data" / "penguins.csv", "species"),
        "regression": (table.assign(price=10 * signal + rng.normal(size=1500)), "price"),
    }


def main() -> None:
    runs = Path(tempfile.mkdtemp(prefix="report-cost-"))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; importance bound {IMPORTANCE_SECONDS:g} s")
    for name, (data, target) in frames(np.random.default_rng(0)).items():
        csv = data if isinstance(data, Path) else runs / f"{name}.csv"
        if isinstance(data, pd.DataFrame):
            data.to_csv(csv, index=False)
        run_task(csv, target, run_id=name, context=RunContext(runs_dir=str(runs), max_iters=3))
        folder = run_folder(runs, name)
        summary = json.loads(folder.summary.read_text())
        ledger = [json.loads(line) for line in folder.experiments.read_text().splitlines()]
        events = [json.loads(line) for line in folder.rewards.read_text().splitlines()]
        task = cast(TaskInfo, {**summary["task"], "csv_sha256": ""})
        seconds = {}
        reports._cached_oof_insight.cache_clear()  # the run drew them in this process: start cold
        report_html._insight_html.cache_clear()
        for label in ("progress first", "progress again"):
            started = time.perf_counter()
            write_progress_report(folder, RunContext(runs_dir=str(runs)), task, ledger, events, summary["incumbent"])
            seconds[label] = time.perf_counter() - started
        problem = problem_of(task)
        X_dev, y_dev, _ = dev_data(task, folder)
        best = summary["best"]
        model = fit_final(parse_spec(best["spec"]), X_dev, y_dev, problem)
        X_hold, y_hold = holdout_data(task, folder)
        started = time.perf_counter()
        holdout_insight(model, X_hold, y_hold, problem, experiment_id=best["experiment_id"], spec=best["spec"])
        seconds["holdout insight"] = time.perf_counter() - started
        started = time.perf_counter()
        render_html(summary, ledger, events, load_insight(folder))
        seconds["delivered page"] = time.perf_counter() - started
        size = folder.report_html.stat().st_size // 1024
        print(f"{name:<11}", "  ".join(f"{k} {v:.2f} s" for k, v in seconds.items()), f"  progress page {size} KiB")


if __name__ == "__main__":
    main()
