"""Did a change to the search pay on the holdout? tandem's scores in two benches, pair by pair.

A change to the Scientist is judged where no run could see it: the holdout scores of the same
tasks, seeds (so splits) and budget, played before and after the change. This script pairs the
tandem games of two stored benches by (task, seed), splits the tasks by their development rows
at `SMALL_DEV_ROWS` (below it tandem repeats its folds and searches one family only), and
reports per task the mean holdout score before and after, and per group the paired wins, ties
and losses and a two-sided Wilcoxon signed-rank test on the relative changes (ties split, as
docs/benchmarks.md's seeds section does).

Each `--compare` is one section of the page: a title, then the bench before and the bench after,
each as the folder `tandem bench` writes next to its results store (RESULTS_DIR/BENCH_ID, holding
`results.csv`), or several joined by commas, whose later games replace earlier ones of the same
task and seed. Writes `docs/search-two-families.md` unless `--out` says otherwise. Reproduce (the
benches first, each played by `tandem bench --players tandem ...` with the code its title names):

    .venv/bin/python scripts/search_ab.py [--tasks TASKS] [--title TITLE] \\
        --compare "TITLE" BEFORE_BENCH_FOLDER AFTER_BENCH_FOLDER [--compare ...] [--out PAGE]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from scipy.stats import wilcoxon

from tandem.benchmarks.results_store import ResultsStore
from tandem.benchmarks.tasks import Task, materialize, select_tasks
from tandem.tools.metrics import METRICS
from tandem.tools.training import SMALL_DEV_ROWS

ROOT = Path(__file__).resolve().parents[1]
SAME = 1e-9
"""Relative changes smaller than this are ties: the same model's score summed in another order."""


@dataclass(frozen=True)
class Game:
    """One tandem game of a bench: its task, seed, holdout score, the direction of its metric, and
    its wall-clock seconds (the bench's clock around the whole run) against its time budget."""

    task: str
    seed: int
    metric: str
    score: float
    greater_is_better: bool
    wall_seconds: float
    budget: float


@dataclass(frozen=True)
class Bench:
    """A bench's tandem games by (task, seed), as its folder's `results.csv` lists them."""

    label: str
    games: dict[tuple[str, int], Game]


def load_bench(folders: str) -> Bench:
    """The tandem games that ended with a score in one bench folder (`RESULTS_DIR/BENCH_ID`, as
    `tandem bench` writes it), or in several joined by commas: a later folder's game replaces an
    earlier one's of the same task and seed (games played again, for example because another job
    shared the machine while they ran)."""
    games = {}
    for folder in folders.split(","):
        table = Path(folder) / "results.csv"
        if not table.is_file():
            raise SystemExit(f"search_ab: no results.csv in {folder} (a bench folder: RESULTS_DIR/BENCH_ID)")
        with table.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row["player"] == "tandem" and row["status"] == "ok" and row["score"]:
                    metric = row["metric"]
                    if metric not in METRICS:
                        raise SystemExit(f"search_ab: {table} names an unknown metric {metric!r}")
                    game = Game(
                        row["task"],
                        int(row["seed"]),
                        metric,
                        float(row["score"]),
                        METRICS[metric].greater_is_better,
                        float(row["wall_seconds"]),
                        float(row["budget"]),
                    )
                    games[game.task, game.seed] = game
    return Bench(" + ".join(Path(folder).name for folder in folders.split(",")), games)


def development_rows(tasks: set[str], seeds: dict[str, int], suite: dict[str, Task]) -> dict[str, int]:
    """Each task's development rows at one of its seeds (a split's size does not depend on its seed)."""
    unknown = sorted(tasks - set(suite))
    if unknown:
        raise SystemExit(f"search_ab: not tasks of --tasks: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as cache:
        return {name: materialize(suite[name], cache, seeds[name]).n_dev for name in sorted(tasks)}


def relative_change(before: Game, after: Game) -> float:
    """After over before, signed so that positive is better, as a share of the before score."""
    sign = 1.0 if before.greater_is_better else -1.0
    change = sign * (after.score - before.score) / max(abs(before.score), 1e-12)
    return 0.0 if abs(change) < SAME else change


def _group_line(name: str, changes: list[float]) -> str:
    wins = sum(c > 0 for c in changes)
    losses = sum(c < 0 for c in changes)
    ties = len(changes) - wins - losses
    p = float(wilcoxon(changes, zero_method="zsplit").pvalue) if any(changes) else 1.0
    mean = 100 * statistics.fmean(changes) if changes else float("nan")
    return f"| {name} | {len(changes)} | {wins} / {ties} / {losses} | {mean:+.2f}% | {p:.3f} |"


def section(title: str, before: Bench, after: Bench, suite: dict[str, Task]) -> list[str]:
    """One comparison: the per-task table, then the paired counts and tests per size group."""
    pairs = sorted(set(before.games) & set(after.games))
    if not pairs:
        raise SystemExit(f"search_ab: {before.label} and {after.label} share no (task, seed) game")
    rows = development_rows({t for t, _ in pairs}, {t: s for t, s in pairs}, suite)
    lines = [
        f"## {title}",
        "",
        f"Before: bench `{before.label}`; after: bench `{after.label}` (their tables: `benchmarks/results/BENCH_ID/`).",
        "",
        "| task | development rows | metric | seeds | before (mean) | after (mean) | change | seeds +/=/- |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_task: dict[str, list[tuple[Game, Game]]] = defaultdict(list)
    for key in pairs:
        by_task[key[0]].append((before.games[key], after.games[key]))
    groups: dict[str, list[float]] = defaultdict(list)
    for task in sorted(by_task, key=lambda t: (rows[t], t)):
        games = by_task[task]
        changes = [relative_change(b, a) for b, a in games]
        group = (
            f"under {SMALL_DEV_ROWS:,} development rows"
            if rows[task] < SMALL_DEV_ROWS
            else (f"{SMALL_DEV_ROWS:,} development rows or more")
        )
        groups[group].extend(changes)
        groups["all"].extend(changes)
        mean_before = statistics.fmean(b.score for b, _ in games)
        mean_after = statistics.fmean(a.score for _, a in games)
        better, worse = sum(c > 0 for c in changes), sum(c < 0 for c in changes)
        lines.append(
            f"| {task} | {rows[task]:,} | {games[0][0].metric} | {','.join(str(b.seed) for b, _ in games)} "
            f"| {mean_before:.4f} | {mean_after:.4f} | {100 * statistics.fmean(changes):+.2f}% "
            f"| {better} / {len(games) - better - worse} / {worse} |"
        )
    lines += [
        "",
        "| tasks | (task, seed) pairs | better / tied / worse | mean relative change | Wilcoxon p (two-sided) |",
        "|---|---|---|---|---|",
    ]
    lines += [_group_line(name, groups[name]) for name in sorted(groups, key=lambda g: (g == "all", g))]
    return [*lines, ""]


def time_section(benches: tuple[Bench, Bench]) -> list[str]:
    """How long the games of each bench took against their time budget, over the pairs both played."""
    pairs = sorted(set(benches[0].games) & set(benches[1].games))
    lines = [
        "Wall-clock time against the time budget (the bench's clock around the whole run, delivery included):",
        "",
        "| bench | games | mean wall / budget | median | max | games over budget + 5% |",
        "|---|---|---|---|---|---|",
    ]
    for bench in benches:
        ratios = [bench.games[key].wall_seconds / bench.games[key].budget for key in pairs]
        lines.append(
            f"| `{bench.label}` | {len(ratios)} | {statistics.fmean(ratios):.3f} | {statistics.median(ratios):.3f} "
            f"| {max(ratios):.3f} | {sum(r > 1.05 for r in ratios)} |"
        )
    return [*lines, ""]


@dataclass(frozen=True)
class LedgerCosts:
    """Where a bench's tandem runs spent their time, from their ledgers."""

    runs: int
    scored: int
    timeouts: int
    timeout_seconds: float
    longest_timeout: float


def ledger_costs(folders: str, pairs: set[tuple[str, int]]) -> LedgerCosts | None:
    """Experiments scored, and the candidates stopped for time with the seconds they took, over the
    tandem runs of the (task, seed) `pairs` in a bench folder or in several joined by commas (as
    `load_bench` pools them). None when a bench's results store or its run folders are not here (a
    bench folder copied without them)."""
    runs: dict[tuple[str, int], Path] = {}
    for folder in folders.split(","):
        if not (Path(folder).parent / "results.sqlite").is_file():
            return None
        runs |= {
            (task, seed): run
            for task, seed, run in ResultsStore(Path(folder).parent).tandem_runs(Path(folder).name)
            if (task, seed) in pairs
        }
    ledgers = [run / "experiments.jsonl" for run in runs.values()]
    if not runs or not all(ledger.is_file() for ledger in ledgers):
        return None
    records = [json.loads(line) for ledger in ledgers for line in ledger.read_text().splitlines() if line.strip()]
    seconds = [float(r.get("fit_seconds") or 0.0) for r in records if r["status"] == "timeout"]
    return LedgerCosts(
        len(runs), sum(r["status"] == "ok" for r in records), len(seconds), sum(seconds), max(seconds, default=0.0)
    )


def costs_section(benches: tuple[Bench, Bench], costs: tuple[LedgerCosts | None, LedgerCosts | None]) -> list[str]:
    """The two benches' ledgers side by side: what the runs did with their time."""
    lines = [
        "From the runs' ledgers (the paired tandem games of each bench, in the run folders of its results store):",
        "",
        "| bench | runs | experiments scored | stopped for time | seconds in them | longest |",
        "|---|---|---|---|---|---|",
    ]
    for bench, cost in zip(benches, costs, strict=True):
        if cost is None:
            return []
        lines.append(
            f"| `{bench.label}` | {cost.runs} | {cost.scored} | {cost.timeouts} "
            f"| {cost.timeout_seconds:.1f} | {cost.longest_timeout:.1f} |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--compare",
        nargs=3,
        action="append",
        required=True,
        metavar=("TITLE", "BEFORE", "AFTER"),
        help="a section: its title, and the bench folders before and after",
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "search-two-families.md"))
    parser.add_argument(
        "--tasks", default=None, help="the benches' tasks, as `tandem bench --tasks` takes them (default: the suite)"
    )
    parser.add_argument("--title", default="The search's families", help="what the page compares")
    args = parser.parse_args(argv)
    suite = {task.name: task for task in select_tasks(args.tasks)}
    body = []
    for title, before, after in args.compare:
        benches = load_bench(before), load_bench(after)
        body += section(title, *benches, suite)
        body += time_section(benches)
        pairs = set(benches[0].games) & set(benches[1].games)
        body += costs_section(benches, (ledger_costs(before, pairs), ledger_costs(after, pairs)))
    options = [
        *(["--tasks", args.tasks] if args.tasks else []),
        *(["--title", f'"{args.title}"'] if args.title != parser.get_default("title") else []),
    ]
    command = " ".join(["scripts/search_ab.py", *options, *(f'--compare "{t}" {b} {a}' for t, b, a in args.compare)])
    page = [
        f"# {args.title}: holdout scores before and after, pair by pair",
        "",
        f"Generated {date.today().isoformat()} by `.venv/bin/python {command}`.",
        "Each pair is one task and seed (so one split) played by tandem alone at the same budget before and",
        "after; a change is the after score's gain as a share of the before score (positive: better, also",
        "for error metrics). The Wilcoxon test is paired over (task, seed) pairs, ties split.",
        "",
        *body,
    ]
    Path(args.out).write_text("\n".join(page))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
