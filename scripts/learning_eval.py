"""Held-out evaluation of a learned Scientist policy against the playbook; writes docs/learning-eval.md.

    .venv/bin/python scripts/learning_eval.py --policy learned|POLICY.json [--tasks penguins,wine,...]
        [--seeds 0,1,2] [--max-iters 10] [--time-budget SECONDS] [--workers 2]

Every task here is one the training pool leaves out (the benchmark suite's small tasks, which
are also shared datasets), each run with the same iteration budget and, by default, no time
budget, so the two policies get exactly the same work and the comparison does not depend on the
machine's load. With `--time-budget` a run also stops at that many seconds (the issue's second
budget); the two policies' runs of a pair then share the machine alike (every run of one
evaluation has the same number of workers beside it), but the result depends on the machine.
Per (task, seed) both policies start from the same baseline on the same split and folds. Scores:

- normalised holdout = (delivered holdout − baseline holdout) on the primary metric, signed so
  that higher is better, divided by the baseline's fold standard deviation (the learning signal's
  unit, nodes/agents/learned_scientist.py);
- anytime curve = the best CV score after each iteration, normalised the same way against the
  baseline's CV (delivery's blend on small data is not an iteration); its area = the mean of the
  curve over iterations 1..N, N = the first `ANYTIME_ITERATIONS` (10) or fewer if the budget is.

Win/tie/loss counts and a Wilcoxon signed-rank test are over the (task, seed) pairs. Nothing in
the output is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import wilcoxon

from tandem.api import run_task
from tandem.benchmarks.tasks import materialize, select_tasks
from tandem.graph.context import RunContext
from tandem.nodes.agents.learned_scientist import baseline_spread
from tandem.nodes.deliver import DELIVERY_MOVE
from tandem.tools.metrics import METRICS, reward_scale
from tandem.tools.policy_file import LEARNED, policy_path, read_policy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TASKS = "penguins,breast_cancer,wine,diabetes"
ANYTIME_ITERATIONS = 10
"""The anytime curve's horizon, as the learning issue asks: the first 10 iterations, whatever the
experiment budget. A time-bound run's 1000 would average each run's best, carried on after it
stopped, over iterations no run reached."""


def one_run(
    task_name: str, policy: str, seed: int, max_iters: int, work: str, time_budget: float | None = None
) -> dict[str, Any]:
    (task,) = select_tasks(task_name)
    data = materialize(task, Path(work) / "tasks")
    label = "playbook" if policy == "playbook" else "learned"
    context = RunContext(
        runs_dir=str(Path(work) / "runs"), max_iters=max_iters, time_budget=time_budget, n_jobs=1, policy=policy
    )
    run_id = f"{task.name}-{label}-s{seed}"
    folder = Path(work) / "runs" / run_id
    started = time.perf_counter()
    if (folder / "summary.json").exists() and _same_budget_and_policy(folder, context):  # reused
        summary = json.loads((folder / "summary.json").read_text())
        started -= float(summary.get("seconds_spent") or 0.0)  # its own working time, not the reading
    else:
        shutil.rmtree(folder, ignore_errors=True)  # a run a stopped evaluation left half done
        summary = run_task(
            data.dev_csv,
            task.target,
            metrics=list(data.problem.metrics),
            primary_metric=data.problem.primary_metric,
            folds=task.folds,
            seed=seed,
            holdout_csv=data.holdout_csv,
            task_type=data.problem.task_type,
            run_id=run_id,
            context=context,
        )
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in (folder / "experiments.jsonl").read_text().splitlines() if line]
    ledger = [r for r in rows if r["move"] != DELIVERY_MOVE]  # the search's experiments: delivery's blend is no
    # iteration, and its CV, weighted on the same predictions, would flatter a run that stopped early
    metric = data.problem.primary_metric
    sign = 1.0 if METRICS[metric].greater_is_better else -1.0
    spread = baseline_spread(ledger, metric)
    base_cv = float(ledger[0]["primary"])
    scale = reward_scale(metric, base_cv)
    best, curve = base_cv, []
    for i in range(1, min(max_iters, ANYTIME_ITERATIONS) + 1):
        ok = i < len(ledger) and ledger[i]["status"] == "ok" and ledger[i]["primary"] is not None
        if ok and sign * (float(ledger[i]["primary"]) - best) > 0:
            best = float(ledger[i]["primary"])
        curve.append(sign * (best - base_cv) / scale / spread)  # a run that delivered early keeps its best
    base_hold = float(summary["baseline"]["holdout"][metric])
    hold = float(summary["best"]["holdout"][metric])
    return {
        "task": task.name,
        "policy": label,
        "seed": seed,
        "metric": metric,
        "holdout": hold,
        "baseline_holdout": base_hold,
        "normalised_holdout": sign * (hold - base_hold) / reward_scale(metric, base_hold) / spread,
        "curve": curve,
        "area": float(np.mean(curve)),
        "moves": [r["move"] for r in ledger[1:]],
        "iterations": len(ledger) - 1,
        "seconds": round(seconds, 1),
    }


def _same_budget_and_policy(folder: Path, context: RunContext) -> bool:
    """Whether a finished run in `folder` (from an earlier, stopped evaluation) is this run: the same
    policy file and the same budgets. The code that made it is not compared, so evaluate changed
    code in a fresh `--work` folder: the playbook's runs of 2026-12-01 did not reproduce on 12-02's."""
    stored = json.loads((folder / "run.json").read_text())["context"]
    return all(stored.get(key) == getattr(context, key) for key in ("policy_hash", "max_iters", "time_budget"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--policy", required=True)
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-iters", type=int, default=10)
    parser.add_argument("--time-budget", type=float, default=None, help="seconds per run (default: none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default="/tmp/tandem-learning-eval")
    parser.add_argument("--out", default=str(ROOT / "docs" / "learning-eval.md"))
    parser.add_argument("--render-only", action="store_true", help="rewrite the page from the stored rows")
    args = parser.parse_args(argv)
    policy_file = policy_path(args.policy)  # `learned` is the shipped policy
    policy = read_policy(policy_file)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = [t.name for t in select_tasks(args.tasks)]
    raw = Path(args.out).with_suffix(".json")
    if args.render_only:  # the pairs both of whose runs finished (an evaluation stopped for time)
        done = lambda t, label, s: (Path(args.work) / "runs" / f"{t}-{label}-s{s}" / "summary.json").exists()  # noqa: E731
        pairs = [(t, s) for t in tasks for s in seeds if done(t, "playbook", s) and done(t, "learned", s)]
        rows = [
            one_run(t, p, s, args.max_iters, args.work, args.time_budget)
            for t, s in pairs
            for p in ("playbook", policy_file)
        ]
        missing = [f"{t} seed {s}" for t in tasks for s in seeds if (t, s) not in pairs]
        wall = sum(r["seconds"] for r in rows) / args.workers
        kept = [t for t in tasks if any(pt == t for pt, _ in pairs)]
        page = render(rows, policy, args, wall, kept, seeds, pairs=pairs)
        if missing:
            page += f"\nNot finished in the time the evaluation had (left out above): {', '.join(missing)}.\n"
        Path(args.out).write_text(page)
        raw.write_text(json.dumps({"policy": policy["hash"], "rows": rows, "missing": missing}, indent=1) + "\n")
        print(page)
        return 0
    jobs = [(t, p, s) for t in tasks for s in seeds for p in ("playbook", policy_file)]
    started = time.perf_counter()
    rows = Parallel(n_jobs=args.workers, backend="loky")(
        delayed(one_run)(t, p, s, args.max_iters, args.work, args.time_budget) for t, p, s in jobs
    )
    wall = time.perf_counter() - started
    raw.write_text(json.dumps({"policy": policy["hash"], "wall": wall, "rows": rows}, indent=1) + "\n")
    Path(args.out).write_text(render(rows, policy, args, wall, tasks, seeds))
    print(Path(args.out).read_text())
    return 0


def _trained_on(policy: dict[str, Any]) -> str:
    """What the policy learnt from, as its provenance says: episodes `tandem train` played, and run
    folders `tandem learn` read (the training pool's, kept by `--keep-runs`), and at what price of time."""
    prov = policy["provenance"]
    parts = []
    if prov.get("episodes"):
        parts.append(
            f"{prov['episodes']} episodes, {prov.get('trained_seconds', 0) / 60:.1f} min of episode wall time, "
            f"on {len(prov.get('tasks', []))} training-pool tasks ({', '.join(prov.get('tasks', []))})"
        )
    if prov.get("runs"):
        learnt_by = prov.get("selected_by") or "`tandem learn`"
        parts.append(f"learnt by {learnt_by} from {len(prov['runs'])} run folders")
    price = policy.get("time_price") or 0.0
    return (
        f"{'; '.join(parts) or 'untrained'}; {prov.get('steps', 0)} moves"
        + (f", learnt at time price {price:g} (docs/learning.md)" if price else "")
        + "; none of the tasks below was ever trained on."
    )


def _shown(policy: str) -> str:
    """A policy as the page names it: `learned`, or a file by its name (the path is this machine's)."""
    return policy if policy == LEARNED else Path(policy).name


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def render(
    rows: list[dict[str, Any]],
    policy: dict[str, Any],
    args: argparse.Namespace,
    wall: float,
    tasks: list[str],
    seeds: list[int],
    pairs: list[tuple[str, int]] | None = None,
) -> str:
    by = {(r["task"], r["seed"], r["policy"]): r for r in rows}
    chosen = pairs if pairs is not None else [(t, s) for t in tasks for s in seeds]
    pairs_ = [(by[(t, s, "learned")], by[(t, s, "playbook")]) for t, s in chosen]
    lines = [
        "# The learned Scientist policy against the playbook, on held-out tasks",
        "",
        f"Generated by `.venv/bin/python scripts/learning_eval.py --policy {_shown(args.policy)} "
        f"--tasks {args.tasks} --seeds {args.seeds} --max-iters {args.max_iters}"
        + (f" --time-budget {args.time_budget:g}" if args.time_budget else "")
        + "` "
        f"({time.strftime('%Y-%m-%d')}, {platform.machine()}, {wall / 60:.1f} min wall). Do not edit by hand.",
        "",
        f"Policy `{_shown(args.policy)}`, hash `{policy['hash'][:16]}`: " + _trained_on(policy),
        "",
        f"Budget: {args.max_iters} iterations, "
        + (f"at most {args.time_budget:g} s a run" if args.time_budget else "no time budget")
        + f", heuristic Executor; seeds {args.seeds}. "
        "Normalised = gain over the baseline (experiment #0, the same for both policies) in units of the "
        "baseline's fold standard deviation; area = mean best-CV curve over iterations 1..N.",
        "",
        "| task | seed | metric | playbook holdout | learned holdout | playbook norm. | learned norm. "
        "| playbook area | learned area |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for learned, playbook in pairs_:
        lines.append(
            f"| {learned['task']} | {learned['seed']} | {learned['metric']} | {playbook['holdout']:.4f} "
            f"| {learned['holdout']:.4f} | {_fmt(playbook['normalised_holdout'])} "
            f"| {_fmt(learned['normalised_holdout'])} "
            f"| {_fmt(playbook['area'])} | {_fmt(learned['area'])} |"
        )
    lines += [
        "",
        "| measure | playbook | learned | wins / ties / losses (learned) | Wilcoxon p (two-sided) |",
        "|---|---|---|---|---|",
    ]
    for key, name in (
        ("normalised_holdout", "mean normalised holdout"),
        ("area", f"mean anytime area ({len(pairs_[0][0]['curve'])} it.)"),
    ):
        diffs = np.array([a[key] - b[key] for a, b in pairs_])
        wins, ties, losses = int((diffs > 1e-9).sum()), int((abs(diffs) <= 1e-9).sum()), int((diffs < -1e-9).sum())
        nonzero = diffs[abs(diffs) > 1e-9]
        p = float(wilcoxon(nonzero).pvalue) if len(nonzero) >= 1 else float("nan")
        lines.append(
            f"| {name} | {_fmt(float(np.mean([b[key] for a, b in pairs_])))} | "
            f"{_fmt(float(np.mean([a[key] for a, b in pairs_])))} | {wins} / {ties} / {losses} | {p:.3f} |"
        )
    means = {
        key: (float(np.mean([a[key] for a, _ in pairs_])), float(np.mean([b[key] for _, b in pairs_])))
        for key in ("normalised_holdout", "area")
    }
    wins = means["normalised_holdout"][0] >= means["normalised_holdout"][1] and means["area"][0] > means["area"][1]
    lines += [
        "",
        "**Verdict:** "
        + (
            "the learned policy is at least as good on mean normalised holdout and better on the anytime area: "
            "it may ship as the default."
            if wins
            else "the learned policy does not beat the playbook on both measures (at least as good on mean "
            "normalised holdout *and* better on the anytime area), so `playbook` stays the default."
        ),
    ]
    lines += [
        "",
        "Anytime curve (mean normalised best CV after each iteration):",
        "",
        "| iteration | playbook | learned |",
        "|---|---|---|",
    ]
    for i in range(len(pairs_[0][0]["curve"])):
        lines.append(
            f"| {i + 1} | {_fmt(float(np.mean([b['curve'][i] for a, b in pairs_])))} "
            f"| {_fmt(float(np.mean([a['curve'][i] for a, b in pairs_])))} |"
        )
    lines += ["", "First moves played:", ""]
    for t, s in chosen:
        if s == min(x for task, x in chosen if task == t):
            lines.append(
                f"- {t} (seed {s}): playbook {by[(t, s, 'playbook')]['moves'][:4]}, "
                f"learned {by[(t, s, 'learned')]['moves'][:4]}"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
