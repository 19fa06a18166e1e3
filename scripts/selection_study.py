"""Which experiment should a small-data run deliver? Measured on the holdouts of finished bench runs.

A run chooses what to deliver from cross-validation alone; whether the rule was a good one only
shows on data it never saw. This script takes the tandem runs of stored benches, refits every
successful experiment of each ledger on the run's development part, scores it on the run's
holdout, and compares the delivery rules one could have applied to the same ledger:

- the rule tandem applies now, Caruana's greedy ensemble selection over a pool of single pipelines,
  each family's best first (`graph/reward_rules.py: small_data_blend`), computed from predictions (no
  ledger entry needed), the same over the best by score alone, the rule before, and the same with
  experiments of a tuned or fixed threshold standing in the pool for their models, not adopted;
- the rules tandem applied before, kept here to be compared: an average of the experiments within
  fold noise of the best, else the simplest of them (`average_within_noise`), the same kept only if
  it beats the baseline significantly on the folds, else the baseline (`guarded`), a variant of that
  guard that on a discrete primary metric also accepts log-loss's evidence, and the simplest
  experiment within fold noise of the best;
- Caruana's blend gated by its nested cross-validation (`nested_caruana_folds`: pool and weights
  chosen on the other folds, scored on each fold): kept when it beats the baseline #0
  significantly, or on the mean alone, else the baseline;
- the best mean CV score (the incumbent), and the baseline (experiment #0);
- the equal-weight average of the k best single pipelines by CV (k = 2, 3, 5);
- the best single experiment on the holdout: an oracle no rule can reach, for scale.

The holdout is read here only to judge rules after the fact; nothing of it reaches a run.
Writes docs/selection-study.md. Reproduce (after the benches it names have been played, so
their run folders exist under the results store):

    .venv/bin/python scripts/selection_study.py --bench BENCH_ID[,BENCH_ID...] [--bench ...]

Each `--bench` is one section of the page (several bench ids joined by commas pool their runs);
with more than one, a last section pools every run. Rules are counted against the earlier rule,
or against `--reference NAME` (for example the rule tandem applies now).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from tandem.benchmarks.results_store import ResultsStore
from tandem.graph.context import RewardConfig, RunContext
from tandem.graph.persistence import problem_of
from tandem.graph.reward_rules import blend_candidates, blend_pool, compare, small_data_blend
from tandem.nodes.deliver import DELIVERY_MOVE
from tandem.tools.builder import predict
from tandem.tools.data import read_table_hashed
from tandem.tools.ensemble_selection import blend_score, select_ensemble
from tandem.tools.metrics import METRICS, Predictions
from tandem.tools.spec import complexity, parse_spec, spec_hash
from tandem.tools.training import DISCRETE_METRICS, TIE_BREAK_METRIC, Problem, fit_final, load_oof

ROOT = Path(__file__).resolve().parents[1]
NOISE_T = 1.0
SMALL_DATA_ROWS = RunContext().small_data_rows
DEFAULT_OUT = ROOT / "docs" / "selection-study.md"
RUN_FILES = ("summary.json", "run.json", "experiments.jsonl", "split.json")
"""What `load_run` reads from a run folder (a copied results folder may keep only some of them)."""
REFERENCE = "simplest within noise"
"""The rule every other one is counted against by default (wins, ties, losses): tandem's first."""
CARUANA_BY_SCORE = "Caruana, pool by score alone"
"""The rule tandem applied from 2026-12-03 until the pool kept a place for each family's best."""
CARUANA_THRESHOLDS = "Caruana, thresholded experiments in the pool"
"""A rule measured and not adopted (docs/decisions.md, "Thresholded experiments in the pool")."""
NESTED_SIGNIFICANT = "Caruana if nested CV beats #0 significantly"
NESTED_MEAN = "Caruana if nested CV beats #0 on the mean"
GUARDED = "guarded by #0"
"""The rule tandem applied from 2026-12-02 until Caruana's blend replaced it."""


@dataclass
class RunHoldout:
    """One run's ledger with every experiment's holdout predictions (probabilities or values)."""

    name: str
    task_name: str
    task: dict[str, Any]
    seed: int
    ledger: list[dict[str, Any]]
    incumbent: int
    delivered: int
    proba: dict[int, np.ndarray]
    labels: dict[int, np.ndarray]
    oof: dict[int, np.ndarray]
    y_dev: np.ndarray
    y_hold: np.ndarray
    folds: np.ndarray
    """The run's fold of every development row, one row per repeat (the order of the fold scores)."""

    @cached_property
    def nested_blend_folds(self) -> list[float] | None:
        """`nested_caruana_folds` of this run, computed once for every rule that reads it."""
        return nested_caruana_folds(self)

    @property
    def problem(self) -> Problem:
        return problem_of(self.task)  # type: ignore[arg-type]

    @property
    def metric(self) -> str:
        return str(self.task["primary_metric"])

    def score(self, values: np.ndarray, labels: np.ndarray | None = None) -> float:
        """The primary metric of these holdout predictions (labels by argmax unless given)."""
        problem = self.problem
        if problem.task_type == "regression":
            pred = Predictions(y_pred=values[:, 0])
        else:
            proba = values / values.sum(axis=1, keepdims=True)
            pred = Predictions.from_proba(proba, problem.classes, problem.positive_class)
            if labels is not None:  # a model's own labels (a tuned threshold is not the argmax)
                pred = replace(pred, y_pred=labels)
        return float(METRICS[self.metric](self.y_hold, pred))

    def single(self, experiment: int) -> float:
        return self.score(self.proba[experiment], self.labels[experiment])

    def plain_pipelines(self) -> list[int]:
        """Single pipelines at the default threshold, unbagged, with saved out-of-fold predictions,
        best mean CV first: what an average may blend."""
        sign = 1.0 if METRICS[self.metric].greater_is_better else -1.0
        ids = [
            r["id"]
            for r in self.ledger
            if r["id"] in self.proba
            and r["id"] in self.oof
            and r["spec"]["kind"] == "pipeline"
            and r["spec"].get("threshold") == "default"
            and not r["spec"].get("bagging")
        ]
        return sorted(ids, key=lambda i: (-sign * self.ledger[i]["primary"], i))


def load_run(folder: Path, task_name: str, seed: int) -> RunHoldout:
    """Refit every successful experiment of a finished run and predict its holdout."""
    summary = json.loads((folder / "summary.json").read_text())
    request = json.loads((folder / "run.json").read_text())["request"]
    task = summary["task"]
    target = task["target"]
    dev, _ = read_table_hashed(request["csv_path"], keep=[target])
    hold, _ = read_table_hashed(request["holdout_csv"], keep=[target])
    X_dev, y_dev, X_hold = dev.drop(columns=[target]), dev[target], hold.drop(columns=[target])
    ledger = [json.loads(line) for line in (folder / "experiments.jsonl").read_text().splitlines() if line]
    problem = problem_of(task)
    proba: dict[int, np.ndarray] = {}
    labels: dict[int, np.ndarray] = {}
    oof: dict[int, np.ndarray] = {}
    for record in ledger:
        if record["status"] != "ok" or not record["spec"]:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = fit_final(parse_spec(record["spec"]), X_dev, y_dev, problem)
            pred = predict(model, X_hold, problem.task_type, problem.classes, problem.positive_class)
        proba[record["id"]] = pred.proba if pred.proba is not None else np.asarray(pred.y_pred, float)[:, None]
        labels[record["id"]] = np.asarray(pred.y_pred)
        saved = load_oof(folder / "cache", record["spec_hash"]) if record["spec_hash"] else None
        if saved is not None:
            oof[record["id"]] = saved
    return RunHoldout(
        name=folder.name,
        task_name=task_name,
        task=task,
        seed=seed,
        ledger=[r for r in ledger if r["move"] != DELIVERY_MOVE],  # what the search left: every rule's choice
        incumbent=int(summary["incumbent"]),
        delivered=int(summary["best"]["experiment_id"]),
        proba=proba,
        labels=labels,
        oof=oof,
        y_dev=y_dev.to_numpy(),
        y_hold=hold[target].to_numpy(),
        folds=_folds(folder),
    )


def _folds(folder: Path) -> np.ndarray:
    split = json.loads((folder / "split.json").read_text())
    return np.array([split["fold_of_dev"], *split.get("repeat_folds", [])])


def _within_noise(run: RunHoldout) -> list[dict[str, Any]]:
    """The experiments the incumbent does not beat beyond fold noise (paired t below `NOISE_T`)."""
    best = run.ledger[run.incumbent]["fold_scores"][run.metric]
    config, k = RewardConfig(), run.task["folds"]
    return [
        r
        for r in run.ledger
        if r["id"] in run.proba
        and compare(run.metric, best, r["fold_scores"][run.metric], config, folds_per_repeat=k).t_stat < NOISE_T
    ]


def _simplest(run: RunHoldout, records: list[dict[str, Any]]) -> int:
    """The least complex of these experiments (ties: the better mean, then the earlier id)."""
    sign = 1.0 if METRICS[run.metric].greater_is_better else -1.0
    return min(records, key=lambda r: (complexity(parse_spec(r["spec"])), -sign * r["primary"], r["id"]))["id"]


def simplest_within_noise(run: RunHoldout) -> int:
    """tandem's first rule: the least complex experiment the incumbent does not beat beyond noise."""
    close = _within_noise(run)
    return _simplest(run, close) if close else run.incumbent


def _is_average(spec: dict[str, Any] | None) -> bool:
    """A plain average: a soft vote of two or more models with equal weights."""
    spec = spec or {}
    weights = spec.get("weights")
    return (
        spec.get("kind") == "ensemble"
        and spec.get("method") == "voting"
        and len(spec.get("members") or ()) >= 2
        and (not weights or len(set(weights)) == 1)
    )


def average_within_noise(run: RunHoldout) -> int:
    """tandem's second rule: among the experiments within fold noise of the best, the best-scored
    average of models if one was scored, else the least complex."""
    close = _within_noise(run)
    if not close:
        return run.incumbent
    sign = 1.0 if METRICS[run.metric].greater_is_better else -1.0
    averages = [r for r in close if _is_average(r["spec"])]
    if averages:
        return min(averages, key=lambda r: (-sign * r["primary"], r["id"]))["id"]
    return _simplest(run, close)


def _beats_baseline(run: RunHoldout, pick: int, metric: str) -> bool:
    """Whether `pick` beats the baseline #0 significantly on the folds (the run's significance rule)."""
    folds = run.ledger[pick]["fold_scores"][metric], run.ledger[0]["fold_scores"][metric]
    return compare(metric, *folds, RewardConfig(), folds_per_repeat=run.task["folds"]).significant


def guarded(run: RunHoldout) -> int:
    """`average_within_noise`, kept only if it beats the baseline significantly on the folds, else the baseline."""
    pick = average_within_noise(run)
    baseline_usable = run.ledger[0]["status"] == "ok" and run.ledger[0]["fold_scores"].get(run.metric)
    return pick if pick == 0 or not baseline_usable or _beats_baseline(run, pick, run.metric) else 0


def guarded_proper(run: RunHoldout) -> int:
    """`guarded`, but on a discrete primary metric the guard also accepts log-loss's evidence: the
    pick is kept when it is ahead of the baseline on the primary metric and significantly better
    on log-loss (the proper scoring rule the near-tie rule already trusts), else the baseline."""
    pick, kept = average_within_noise(run), guarded(run)
    if kept == pick or run.metric not in DISCRETE_METRICS:
        return kept
    folds = {i: run.ledger[i]["fold_scores"] for i in (0, pick)}
    if any(TIE_BREAK_METRIC not in f for f in folds.values()):
        return kept
    k = run.task["folds"]
    ahead = compare(run.metric, folds[pick][run.metric], folds[0][run.metric], RewardConfig(), folds_per_repeat=k)
    return pick if ahead.gain > 0 and _beats_baseline(run, pick, TIE_BREAK_METRIC) else kept


def average_of_best(k: int) -> Callable[[RunHoldout], float]:
    def rule(run: RunHoldout) -> float:
        members = run.plain_pipelines()[:k] or [run.incumbent]
        return run.score(np.mean([run.proba[i] for i in members], axis=0))

    return rule


def caruana(per_family: bool, thresholds: bool = False) -> Callable[[RunHoldout], float]:
    """`small_data_blend` on this ledger, scored from its members' holdout predictions (else the
    incumbent); `per_family` as there (False: the pool of the best by score alone, the rule before).

    `thresholds=True` is the rule measured and not adopted on 2026-12-07: an experiment with a tuned
    or fixed threshold stands in the pool for its model (whose probabilities a soft vote averages,
    and which its refit predicts), one experiment per model, the best-scored."""

    def rule(run: RunHoldout) -> float:
        by_hash = {r["spec_hash"]: run.oof[r["id"]] for r in run.ledger if r["id"] in run.oof}
        ledger = _models_at_default_threshold(run) if thresholds else run.ledger
        spec = small_data_blend(ledger, by_hash.get, run.y_dev, run.problem, per_family=per_family)  # type: ignore[arg-type]
        if spec is None:
            return run.single(run.incumbent)
        members = [run.proba[i] for i in spec.member_ids]
        return run.score(np.average(members, axis=0, weights=spec.weights))

    return rule


def _models_at_default_threshold(run: RunHoldout) -> list[dict[str, Any]]:
    """The ledger with every single pipeline's threshold set to the default (its saved predictions
    and score kept), and each model's experiments but the best-scored left out."""
    sign = 1.0 if METRICS[run.metric].greater_is_better else -1.0
    ledger = [
        {**r, "spec": {**r["spec"], "threshold": "default"}} if (r["spec"] or {}).get("kind") == "pipeline" else r
        for r in run.ledger
    ]
    best: dict[str, dict[str, Any]] = {}
    for r in ledger:
        if r["status"] == "ok" and r["spec"]:
            model = spec_hash(parse_spec(r["spec"]))  # the same model whatever its idle settings
            if model not in best or sign * r["primary"] > sign * best[model]["primary"]:
                best[model] = r
    kept = {r["id"] for r in best.values()}
    return [r if r["id"] in kept or r["status"] != "ok" else {**r, "status": "left out"} for r in ledger]


def nested_caruana_folds(run: RunHoldout) -> list[float] | None:
    """Caruana's selection as a procedure, cross-validated on the run's own folds: for each repeat
    and fold, the pool (each family's best first) is ranked by the other folds' scores of that
    repeat, its weights are chosen on the other folds' out-of-fold predictions, and the blend is
    scored on this fold. Its fold scores pair with any experiment's, fold by fold, without the
    optimism of a pool and weights chosen on the rows they are scored on (None: no pool)."""
    by_hash = {r["spec_hash"]: run.oof[r["id"]] for r in run.ledger if r["id"] in run.oof}
    greater = METRICS[run.metric].greater_is_better
    sign = 1.0 if greater else -1.0
    n_folds = int(run.folds[0].max()) + 1
    n_scores = len(run.folds) * n_folds
    scored = [r for r in blend_candidates(run.ledger) if len(r["fold_scores"].get(run.metric) or ()) == n_scores]
    problem, scores = run.problem, []
    for r, assignment in enumerate(run.folds):
        for k in range(n_folds):
            inner, outer = assignment != k, assignment == k
            others = [r * n_folds + j for j in range(n_folds) if j != k]
            ranked = [
                {**c, "primary": float(np.mean([c["fold_scores"][run.metric][i] for i in others]))} for c in scored
            ]
            pool = blend_pool(ranked, by_hash.get, greater_is_better=greater)  # type: ignore[arg-type]
            if len(pool) < 2:
                return None
            selection = select_ensemble({i: a[r : r + 1, inner] for i, a in pool.items()}, run.y_dev[inner], problem)
            if selection is None:  # one model is best on the other folds
                best = max(pool, key=lambda i: sign * blend_score(pool[i][r : r + 1, inner], run.y_dev[inner], problem))
                weights = {best: 1}
            else:
                weights = selection.weights
            blend = sum(pool[i][r : r + 1, outer] * w for i, w in weights.items()) / sum(weights.values())
            scores.append(blend_score(np.asarray(blend), run.y_dev[outer], problem))
    return scores


def nested_gate(significant: bool) -> Callable[[RunHoldout], float]:
    """Caruana's blend (tandem's rule now) when its nested fold scores beat the baseline #0's,
    significantly by the run's rule (`significant`) or by the mean alone, else the baseline."""

    def rule(run: RunHoldout) -> float:
        nested = run.nested_blend_folds
        base = run.ledger[0]["fold_scores"].get(run.metric) if run.ledger[0]["status"] == "ok" else None
        if nested is None or not base or len(base) != len(nested):
            return caruana(per_family=True)(run)
        verdict = compare(run.metric, nested, base, RewardConfig(), folds_per_repeat=run.task["folds"])
        keep = verdict.significant if significant else verdict.gain > 0
        return caruana(per_family=True)(run) if keep else run.single(0)

    return rule


def oracle(run: RunHoldout) -> float:
    sign = 1.0 if METRICS[run.metric].greater_is_better else -1.0
    return max((run.single(r["id"]) for r in run.ledger if r["id"] in run.proba), key=lambda v: sign * v)


RULES: dict[str, Callable[[RunHoldout], float]] = {
    "delivered": lambda run: run.single(run.delivered),
    "Caruana (tandem's rule now)": caruana(per_family=True),
    CARUANA_BY_SCORE: caruana(per_family=False),
    CARUANA_THRESHOLDS: caruana(per_family=True, thresholds=True),
    "average within noise": lambda run: run.single(average_within_noise(run)),
    GUARDED: lambda run: run.single(guarded(run)),
    "guarded, log-loss evidence": lambda run: run.single(guarded_proper(run)),
    REFERENCE: lambda run: run.single(simplest_within_noise(run)),
    "best mean CV": lambda run: run.single(run.incumbent),
    "baseline #0": lambda run: run.single(0),
    "average of best 2": average_of_best(2),
    "average of best 3": average_of_best(3),
    "average of best 5": average_of_best(5),
    NESTED_SIGNIFICANT: nested_gate(significant=True),
    NESTED_MEAN: nested_gate(significant=False),
    "oracle (holdout)": oracle,
}


def _fmt(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _section(
    title: str, runs: list[RunHoldout], scores: dict[str, dict[str, float]], missing: list[str], reference: str
) -> list[str]:
    """One group of benches: the mean per task, each rule against the reference rule, and run by run."""
    names = list(RULES)
    lines = [f"## {title}", ""]
    if missing:
        lines += [
            f"{len(missing)} tandem runs of these benches are left out: their run folders are gone or incomplete "
            f"({', '.join(sorted(set(missing)))}).",
            "",
        ]
    lines += [
        f"### Mean over each task's runs ({len(runs)} runs; primary metric, ↑ higher is better, ↓ lower)",
        "",
        "| task | metric | runs | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    by_task: dict[str, list[RunHoldout]] = defaultdict(list)
    for run in runs:
        by_task[run.task_name].append(run)
    for task, group in by_task.items():
        metric = group[0].metric
        arrow = "↑" if METRICS[metric].greater_is_better else "↓"
        cells = [_fmt(float(np.mean([scores[r.name][n] for r in group]))) for n in names]
        lines.append(f"| {task} | {metric} {arrow} | {len(group)} | " + " | ".join(cells) + " |")
    lines += ["", *_against(runs, scores, reference)]
    lines += ["", "### Run by run", "", "| run | seed | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for run in runs:
        cells = [_fmt(scores[run.name][n]) for n in names]
        lines.append(f"| {run.name} | {run.seed} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _against(runs: list[RunHoldout], scores: dict[str, dict[str, float]], reference: str) -> list[str]:
    """Each rule's wins, ties and losses against the reference rule over these runs, with a sign test."""
    named = f"the earlier one ({reference})" if reference == REFERENCE else reference
    lines = [
        f"### Each rule against {named}, run by run",
        "",
        "Wins / ties / losses on the holdout's primary metric, and a two-sided sign test over the runs "
        "that differ (ties dropped).",
        "",
        "| rule | wins | ties | losses | sign test p |",
        "|---|---|---|---|---|",
    ]
    for name in RULES:
        if name in (reference, "oracle (holdout)"):
            continue
        wins = ties = losses = 0
        for run in runs:
            diff = scores[run.name][name] - scores[run.name][reference]
            diff = diff if METRICS[run.metric].greater_is_better else -diff
            if abs(diff) < 1e-12:
                ties += 1
            elif diff > 0:
                wins += 1
            else:
                losses += 1
        p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
        lines.append(f"| {name} | {wins} | {ties} | {losses} | {p:.3f} |")
    return lines


def render(
    groups: list[str], sections: list[list[str]], seconds: float, flags: str, max_dev_rows: int, tasks: str | None
) -> str:
    """The page; `flags` are the command's options besides the benches, as the page should show them."""
    lines = [
        "# Which experiment a small-data run should deliver, judged on holdouts",
        "",
        f"Generated by `.venv/bin/python scripts/selection_study.py {' '.join('--bench ' + g for g in groups)}"
        f"{flags}` "
        f"({date.today().isoformat()}, {platform.machine()}, {seconds / 60:.1f} min). Do not edit by hand.",
        "",
        f"The tandem runs{f' on {tasks}' if tasks else ''} of each group of benches with fewer than "
        f"{max_dev_rows:,} development rows (small "
        f"data, where the rules apply, is under {SMALL_DATA_ROWS:,}): every successful experiment of each ledger "
        "refit on the run's development part and scored on its holdout, so each row compares the rules on the "
        "same ledger. *delivered* is what the run delivered under the code of its bench; *Caruana* applies "
        "`small_data_blend` (Caruana's greedy ensemble selection over the out-of-fold predictions of a pool of "
        "single pipelines, each model family's best first: what tandem delivers since 2026-12-04) to the same "
        "ledger, and *Caruana, pool by score alone* the same over the 8 best by CV (what it delivered from "
        "2026-12-03); *Caruana, thresholded experiments in the pool* lets an experiment with a tuned or fixed "
        "decision threshold stand in the pool for its model (a soft vote averages probabilities, which a "
        "threshold leaves as they are; one experiment per model), measured on 2026-12-07 and not adopted; "
        "*average within noise* is the "
        "rule before (an average within fold noise of the best, else the simplest model), and *guarded by #0* "
        "keeps that choice only if it beats the baseline #0 significantly on the folds, else the baseline (what "
        "tandem delivered on 2026-12-02; *guarded, log-loss evidence* also keeps it, on a discrete primary "
        "metric, when it is ahead there and significantly better on log-loss); "
        "Caruana and the averages are blends of the best single pipelines (default threshold, no bag) computed "
        "from predictions, whether or not the run proposed them. The holdout never reaches a run; it is read "
        "here only to judge the rules afterwards.",
        "",
    ]
    for section in sections:
        lines += section
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bench",
        action="append",
        required=True,
        help="a bench id in the results store, or several joined by commas (one section of the page)",
    )
    parser.add_argument(
        "--max-dev-rows",
        type=int,
        default=SMALL_DATA_ROWS,
        help=f"study runs with fewer development rows than this (default {SMALL_DATA_ROWS:,}: small data, where "
        "the rules apply today; larger asks whether they would pay there too)",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out the runs whose folders are gone (run folders live outside git: a bench played on "
        "another machine or an earlier checkout keeps its results but not its ledgers), and say which",
    )
    parser.add_argument(
        "--reference",
        default=REFERENCE,
        choices=[name for name in RULES if name != "oracle (holdout)"],
        help=f"the rule the others are counted against, run by run (default: {REFERENCE})",
    )
    parser.add_argument(
        "--tasks",
        help="comma-separated task names: study only their runs (a rule that differs on a few tasks, such as "
        "binary classification with a threshold-dependent metric, need not refit the rest)",
    )
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    store = ResultsStore(args.results_dir)
    tasks = set(args.tasks.split(",")) if args.tasks else None
    sections = []
    all_runs: list[RunHoldout] = []
    all_scores: dict[str, dict[str, float]] = {}
    for group in args.bench:
        runs: list[RunHoldout] = []
        missing: list[str] = []
        for bench in group.split(","):
            games = store.tandem_runs(bench)
            if not games:
                sys.exit(f"selection_study: no tandem games of bench {bench} in {store.path}")
            if tasks and not tasks & {task for task, _, _ in games}:
                sys.exit(f"selection_study: bench {bench} has no tandem game on {', '.join(sorted(tasks))}")
            for task, seed, folder in sorted(games):
                if tasks and task not in tasks:
                    continue
                if not all((folder / name).exists() for name in RUN_FILES):
                    if not args.skip_missing:
                        sys.exit(
                            f"selection_study: run folder {folder} is missing or lacks one of {', '.join(RUN_FILES)}; "
                            f"play bench {bench} again to study it, or pass --skip-missing"
                        )
                    missing.append(task)
                    continue
                if json.loads((folder / "summary.json").read_text())["task"]["n_dev_rows"] >= args.max_dev_rows:
                    continue  # by default small data only, where the rules in question apply
                run = load_run(folder, task, seed)
                runs.append(run)
                print(f"{folder.name}: {len(run.proba)} experiments refit", flush=True)
        scores = {run.name: {name: rule(run) for name, rule in RULES.items()} for run in runs}
        title = f"Benches {', '.join(f'`{b}`' for b in group.split(','))}"
        sections.append(_section(title, runs, scores, missing, args.reference))
        all_runs += runs
        all_scores |= scores
    if len(args.bench) > 1:
        pooled = _against(all_runs, all_scores, args.reference)
        sections.append([f"## All {len(all_runs)} runs above, pooled", "", *pooled, ""])
    seconds = time.perf_counter() - started
    flags = f" --max-dev-rows {args.max_dev_rows}" if args.max_dev_rows != SMALL_DATA_ROWS else ""
    flags += " --skip-missing" if args.skip_missing else ""
    flags += f" --tasks {args.tasks}" if args.tasks else ""
    if Path(args.results_dir).resolve() != ROOT / "benchmarks" / "results":
        flags += f" --results-dir {args.results_dir}"  # a store of A/B benches, kept out of the published one
    flags += f' --reference "{args.reference}"' if args.reference != REFERENCE else ""  # names hold no " $ `
    out = Path(args.out).resolve()
    if out != DEFAULT_OUT:
        flags += f" --out {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}"
    Path(args.out).write_text(render(args.bench, sections, seconds, flags, args.max_dev_rows, args.tasks))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
