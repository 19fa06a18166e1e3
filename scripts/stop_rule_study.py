"""Does a long search pay on small data? The stop rule `small_data_stalled`, judged on bench holdouts.

On a few hundred rows every candidate is scored on the same folds, so the best CV score of a search
keeps rising by chance the longer it runs (the winner's curse), and a time-bound run of 300 s
tries 100 to 280 candidates. This script takes the small-data tandem runs of stored benches
(fewer development rows than `RunContext.small_data_rows`, where delivery blends on the
out-of-fold predictions), refits every successful experiment on the run's development part and
scores it on the run's holdout (`selection_study.load_run`), then compares two deliveries of the
same ledger:

- at the end, what the run delivered (Caruana's blend of `small_data_blend`, else the incumbent);
- at the stop point of `nodes/agents/heuristic_scientist.py: small_data_stalled`: the first
  tuning trial (the move the Scientist makes only once the expected value of going on is worth
  it) asked after `VALUE_WINDOW` experiments in a row without a significant gain. There the rule
  delivers what the ledger so far allows, the same way.

A ledger is replayed, not run again: the rule only cuts a run short, so every experiment before the
stop point is the one the run made. The holdout never reaches a run; it is read here only to judge
the rule afterwards. Writes docs/stop-rule-study.md:

    .venv/bin/python scripts/stop_rule_study.py --bench BENCH_ID [--bench BENCH_ID ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
from scipy.stats import binomtest
from selection_study import RunHoldout, load_run

from tandem.benchmarks.results_store import ResultsStore
from tandem.graph.context import RunContext
from tandem.graph.reward_rules import small_data_blend
from tandem.nodes.agents.base import ScientistView
from tandem.nodes.agents.heuristic_scientist import VALUE_WINDOW, small_data_stalled
from tandem.tools.metrics import METRICS
from tandem.tools.tuning import TUNE_MOVE

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "stop-rule-study.md"
SMALL_DATA_ROWS = RunContext().small_data_rows


def stop_point(run: RunHoldout) -> int | None:
    """How many experiments the ledger holds when the rule stops the search (None: it never does)."""
    for k in range(1, len(run.ledger)):
        if run.ledger[k]["move"] != TUNE_MOVE:
            continue
        view = SimpleNamespace(task=run.task, ledger=run.ledger[:k], small_data_rows=SMALL_DATA_ROWS)
        if small_data_stalled(cast(ScientistView, view)):
            return k
    return None


def delivered_from(run: RunHoldout, k: int) -> float:
    """The holdout score of what delivery would choose from the first `k` experiments."""
    ledger = run.ledger[:k]
    by_hash = {r["spec_hash"]: r["id"] for r in ledger if r["spec_hash"]}
    blend = small_data_blend(ledger, lambda key: run.oof.get(by_hash.get(key, -1)), run.y_dev, run.problem)
    if blend is None:
        return run.single(ledger[-1]["incumbent_after"])
    weights = np.asarray(blend.weights) / sum(blend.weights)
    return run.score(sum(w * run.proba[i] for w, i in zip(weights, blend.member_ids, strict=True)))


def study(run: RunHoldout, folder: Path) -> dict[str, Any]:
    n = len(run.ledger)
    k = stop_point(run)
    end = delivered_from(run, n)
    at_stop = delivered_from(run, k) if k is not None else end
    sign = 1.0 if METRICS[run.metric].greater_is_better else -1.0
    gain = sign * (at_stop - end) / max(abs(end), 1e-12)
    return {
        "budget": json.loads((folder / "run.json").read_text())["context"]["time_budget"],
        "task": run.task_name,
        "seed": run.seed,
        "metric": run.metric,
        "rows": run.task["n_dev_rows"],
        "experiments": n,
        "stop": k,
        "end": end,
        "at_stop": at_stop,
        "gain": gain if abs(gain) > 1e-12 else 0.0,
    }


def summary(rows: list[dict[str, Any]]) -> str:
    better = sum(r["gain"] > 0 for r in rows)
    worse = sum(r["gain"] < 0 for r in rows)
    p = binomtest(better, better + worse).pvalue if better + worse else 1.0
    stopped = [r for r in rows if r["stop"] is not None]
    saved = sum(r["experiments"] - r["stop"] for r in stopped) / max(sum(r["experiments"] for r in rows), 1)
    return (
        f"{len(rows)} runs: stopping was better on {better}, the same on {len(rows) - better - worse}, worse on "
        f"{worse} (two-sided sign test over the runs that differ, p = {p:.3f}); mean gain "
        f"{np.mean([r['gain'] for r in rows]):+.3%}. The rule stopped {len(stopped)} of them, which would have "
        f"left out {saved:.0%} of all their experiments."
    )


def render(benches: list[str], flags: str, rows: list[dict[str, Any]], seconds: float) -> str:
    budgets = sorted({r["budget"] for r in rows}, key=lambda b: (b is None, b))
    lines = [
        "# A small-data search stops after ten experiments without a significant gain",
        "",
        f"Generated by `.venv/bin/python scripts/stop_rule_study.py {' '.join('--bench ' + b for b in benches)}"
        f"{flags}` ({date.today().isoformat()}, {platform.machine()}, {seconds / 60:.1f} min). Do not edit by "
        "hand; the rows are in stop-rule-study.json (`--render-only` writes the page again from it).",
        "",
        f"The tandem runs of these benches with fewer than {SMALL_DATA_ROWS:,} development rows, replayed: "
        f"*at the end* is the holdout score of what the run delivered; *at the stop* the score of what delivery "
        f"would have chosen from the ledger when `small_data_stalled` first held at a tuning trial "
        f"({VALUE_WINDOW} experiments in a row without a significant gain; – where it never held). *Gain* is the "
        "difference relative to the end's score, positive when stopping was better. The holdout is read only here.",
        "",
        f"**All runs.** {summary(rows)}",
        "",
    ]
    for budget in budgets:
        part = [r for r in rows if r["budget"] == budget]
        lines.append(
            f"**{budget:.0f} s per run.** {summary(part)}" if budget else f"**No time budget.** {summary(part)}"
        )
        lines.append("")
    lines += [
        "| budget | task | seed | metric | development rows | experiments | stop after | at the stop | at the end "
        "| gain |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["budget"] is None, r["budget"], r["task"], r["seed"])):
        stop = "–" if r["stop"] is None else str(r["stop"])
        budget = f"{r['budget']:.0f} s" if r["budget"] else "–"
        lines.append(
            f"| {budget} | {r['task']} | {r['seed']} | {r['metric']} | {r['rows']:,} | {r['experiments']} | {stop} | "
            f"{r['at_stop']:.4f} | {r['end']:.4f} | {r['gain']:+.2%} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bench", action="append", required=True, help="a bench id in the results store")
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument(
        "--runs-dir",
        action="append",
        default=[],
        type=Path,
        help="another folder holding run folders (the store keeps only each run's ledger and summary "
        "in git; a bench played with another --results-dir keeps its whole run folders there)",
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--render-only", action="store_true", help="write the page again from its json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    flags = "".join(f" --runs-dir {d}" for d in args.runs_dir)
    data = Path(args.out).with_suffix(".json")
    if args.render_only:
        stored = json.loads(data.read_text())
        Path(args.out).write_text(render(stored["benches"], stored["flags"], stored["rows"], stored["seconds"]))
        print(f"wrote {args.out}")
        return 0
    store = ResultsStore(args.results_dir)
    rows = []
    for bench in args.bench:
        games = store.tandem_runs(bench)
        if not games:
            sys.exit(f"stop_rule_study: no tandem games of bench {bench} in {store.path}")
        for task, seed, stored in sorted(games):
            folder = next((d / stored.name for d in args.runs_dir if (d / stored.name / "run.json").exists()), stored)
            summary = folder / "summary.json"
            if not (folder / "run.json").exists():
                sys.exit(f"stop_rule_study: run folder {folder} is missing; play bench {bench} again to study it")
            if json.loads(summary.read_text())["task"]["n_dev_rows"] >= SMALL_DATA_ROWS:
                continue
            rows.append(study(load_run(folder, task, seed), folder))
            print(json.dumps(rows[-1]), flush=True)
    seconds = time.perf_counter() - started
    data.write_text(json.dumps({"benches": args.bench, "flags": flags, "rows": rows, "seconds": seconds}, indent=1))
    Path(args.out).write_text(render(args.bench, flags, rows, seconds))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
