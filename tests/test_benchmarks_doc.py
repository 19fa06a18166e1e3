"""scripts/benchmarks_doc.py says how each task was split across the bench's seeds, from the
bench's stored settings (nothing typed by hand)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tandem.benchmarks.bench import Reuse, run_bench
from tandem.benchmarks.players import PlainPlayer
from tandem.benchmarks.results_store import ResultsStore
from tandem.benchmarks.tasks import Task, default_suite
from tandem.graph.budget import budget_exhausted
from tandem.graph.context import RunContext
from tandem.nodes.agents.heuristic_scientist import EXPERIMENT_BOUND

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmarks_doc.py"


@pytest.fixture(scope="module")
def doc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_doc", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_split_column_follows_the_seed_rule(doc: ModuleType, tmp_path: Path) -> None:
    wine = Task(name="wine", csv="sklearn:wine", target="target", holdout=0.25, split_seed=3)
    bench_id = run_bench([wine], [PlainPlayer("linear")], seeds=[0, 1, 2], results_dir=tmp_path)
    settings = ResultsStore(tmp_path).bench(bench_id)["settings"]
    wanted = "25% holdout, split seed 3,4,5 (one split per seed)"
    assert doc._split_text(settings["tasks"][0], settings["seeds"]) == wanted
    house: dict[str, Any] = next(t for t in default_suite() if t.name == "house_prices").to_dict()
    house["fingerprints"] = ["a", "a", "a"]
    assert doc._split_text(house, [0, 1, 2]) == "20% holdout, MLGym's fixed split (split seed 42) for every seed"
    own = {"holdout_csv": "/data/test.csv", "holdout": 0.2, "split_seed": 0, "fingerprints": ["b"]}
    assert doc._split_text(own, [0, 1]) == "holdout file test.csv, the same for every seed"
    before = {"holdout_csv": None, "holdout": 0.2, "split_seed": 0, "description": ""}  # stored before seeds split
    assert doc._split_text(before, [0, 1]) == "20% holdout, one fixed split (split seed 0) for every seed"


def test_a_rival_missing_from_the_bench_is_judged_in_the_latest_bench_it_played(
    doc: ModuleType, tmp_path: Path
) -> None:
    """The goals compare tandem with a rival inside one bench, never across benches: a rival that
    sat out the newest bench is judged in the latest earlier bench of the same tasks, seeds and budget."""
    wine = Task(name="wine", csv="sklearn:wine", target="target", holdout=0.25, split_seed=3)
    store = ResultsStore(tmp_path)
    both = run_bench([wine], [PlainPlayer("linear"), PlainPlayer("lightgbm")], seeds=[0], results_dir=tmp_path)
    alone = run_bench([wine], [PlainPlayer("linear")], seeds=[0], results_dir=tmp_path)
    row = doc._rival_elsewhere(store, store.bench(alone), "lightgbm", "linear ≥ lightgbm", 0.5)
    scores = {r["player"]: r["score"] for r in store.results(both)}
    met = scores["linear"] >= scores["lightgbm"]
    assert f"did not play in this bench; in `{both}`" in row
    assert f"{int(met)}/1 tasks (need 1)" in row and ("**met** there" if met else "**missed** there") in row
    assert "not measured" in doc._rival_elsewhere(store, store.bench(alone), "flaml", "linear ≥ flaml", 0.9)


def test_the_seeds_section_shows_the_suite_not_a_later_bench_of_other_tasks(doc: ModuleType, tmp_path: Path) -> None:
    """A bench of tasks outside the suite (`--tasks benchmarks/unseen.toml`) at the same budget,
    played later and over more seeds, must not take the suite's place on the page."""
    wine = Task(name="wine", csv="sklearn:wine", target="target", holdout=0.25, split_seed=3)
    other = Task(name="not_in_the_suite", csv="sklearn:iris", target="target", holdout=0.25)
    store = ResultsStore(tmp_path)
    suite = run_bench([wine], [PlainPlayer("linear")], seeds=[0], budget=60, results_dir=tmp_path)
    run_bench([other], [PlainPlayer("linear")], seeds=[0, 1, 2], budget=60, results_dir=tmp_path)
    assert doc._seed_bench(store, 60.0)["bench_id"] == suite
    more_seeds = run_bench([wine], [PlainPlayer("linear")], seeds=[0, 1], budget=60, results_dir=tmp_path)
    assert doc._seed_bench(store, 60.0)["bench_id"] == more_seeds
    assert doc._seed_bench(store, 300.0) is None
    # the page's own bench (`--bench-id`) is shown at its budget, whatever was played after it
    pinned = "\n".join(doc._seeds_section(store, (60.0,), store.bench(suite)))
    assert f"Bench `{suite}`" in pinned and more_seeds not in pinned


class _Stopped(PlainPlayer):
    """A player whose first game is stopped by Ctrl-C, as a bench killed midway is."""

    def play(self, data: Any, *, budget: float, seed: int, workdir: Path) -> Any:
        raise KeyboardInterrupt


def test_a_bench_stopped_midway_does_not_replace_a_finished_one(doc: ModuleType, tmp_path: Path) -> None:
    """A later bench with more seeds that was stopped before its last games (to be resumed) is not
    shown in place of a finished one, at a budget or as the page's bench, until it is finished."""
    wine = Task(name="wine", csv="sklearn:wine", target="target", holdout=0.25, split_seed=3)
    store = ResultsStore(tmp_path)
    finished = run_bench([wine], [PlainPlayer("linear")], seeds=[0], budget=60, results_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_bench([wine], [PlainPlayer("linear"), _Stopped("lightgbm")], seeds=[0, 1], budget=60, results_dir=tmp_path)
    stopped = store.benches("bench")[-1]
    assert [r["player"] for r in store.results(stopped["bench_id"])] == ["linear"]
    assert doc.games_left(store, stopped) == 3
    assert doc._seed_bench(store, 60.0)["bench_id"] == finished
    assert doc._pick_bench(store, None)["bench_id"] == finished
    resumed = run_bench([wine], [PlainPlayer("linear"), PlainPlayer("lightgbm")], seeds=[0, 1], budget=60,
                        results_dir=tmp_path, resume=stopped["bench_id"])  # fmt: skip
    assert doc.games_left(store, store.bench(resumed)) == 0
    assert doc._seed_bench(store, 60.0)["bench_id"] == resumed


def test_a_budget_that_covers_part_of_the_suite_names_the_tasks_it_left_out(doc: ModuleType, tmp_path: Path) -> None:
    """A 300 s bench of a few tasks must not read as the whole suite's: its section says how many
    of the suite's tasks it covers and lists the others."""
    wine = next(t for t in default_suite() if t.name == "wine")
    store = ResultsStore(tmp_path)
    run_bench([wine], [PlainPlayer("linear")], seeds=[0], budget=300, results_dir=tmp_path)
    text = "\n".join(doc._seeds_section(store, (300.0,)))
    suite = [t.name for t in default_suite()]
    left_out = [name for name in suite if name != "wine"]
    assert f"covers 1 of the suite's {len(suite)} tasks; not played at it yet: {', '.join(left_out)}." in text
    assert doc._suite_coverage({"bench_id": "b"}, set(suite), True, "r") == []


class _StopsAt(PlainPlayer):
    """The linear player, stopped by Ctrl-C when it reaches one task, as a bench killed midway is."""

    def __init__(self, name: str, stop_at: str) -> None:
        super().__init__(name)
        self.stop_at = stop_at

    def play(self, data: Any, *, budget: float, seed: int, workdir: Path) -> Any:
        if data.task.name == self.stop_at:
            raise KeyboardInterrupt
        return super().play(data, budget=budget, seed=seed, workdir=workdir)


def test_a_stopped_bench_with_more_of_the_suite_complete_is_shown_with_how_it_goes_on(
    doc: ModuleType, tmp_path: Path
) -> None:
    """A 300 s bench stopped with 20 tasks played says more than a finished one of 13: the budget's
    section shows the bench with the most of the suite complete, and how the rest is played."""
    wine, penguins, diabetes = (
        next(t for t in default_suite() if t.name == n) for n in ("wine", "penguins", "diabetes")
    )
    store = ResultsStore(tmp_path)
    finished = run_bench([wine], [PlainPlayer("linear")], seeds=[0], budget=300, results_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_bench(
            [wine, penguins, diabetes], [_StopsAt("linear", "diabetes")], seeds=[0], budget=300, results_dir=tmp_path
        )
    stopped = store.benches("bench")[-1]
    assert doc._seed_bench(store, 300.0)["bench_id"] == stopped["bench_id"] != finished
    text = "\n".join(doc._seeds_section(store, (300.0,), results_dir="R"))
    assert f"covers 2 of the suite's {len(default_suite())} tasks" in text and "diabetes" in text
    assert f"`tandem bench --resume {stopped['bench_id']} --results-dir R` plays the rest" in text


class _StoppedTandem(PlainPlayer):
    """A stand-in for the tandem player whose games end the way tandem's runs do: the linear
    baseline's scores, with the stop reason of its run by seed."""

    reasons = (
        str(budget_exhausted({"iteration": 40}, RunContext(max_iters=40, time_budget=None))),
        "the Scientist delivered: Delivering the incumbent: 8 proposals in a row brought no gain; expected gain "
        "of going on 0.0009 (about 0.00018 per candidate over the last 10 experiments, room for 5 more "
        f"candidates {EXPERIMENT_BOUND}).",
        "time budget reached (300 s; about 15 s kept for delivery)",
        "the Scientist delivered: Delivering the incumbent: every idea in the playbook has been tried; expected "
        "gain of going on 0.0004 (about 0.00044 per candidate over the last 10 experiments, room for 1 more "
        "candidates).",
    )

    @property
    def name(self) -> str:
        return "tandem"

    def play(self, data: Any, *, budget: float, seed: int, workdir: Path) -> Any:
        result = super().play(data, budget=budget, seed=seed, workdir=workdir)
        result.details["stop_reason"] = self.reasons[seed]
        return result


def test_a_budget_section_says_what_ended_tandems_runs(doc: ModuleType, tmp_path: Path) -> None:
    """*At equal time* holds only where tandem's runs were stopped by the time: the section counts
    the runs its experiment budget ended (reached, or bounding the Scientist's expected gain) apart
    from those the time or the Scientist's stop rule ended."""
    wine = Task(name="wine", csv="sklearn:wine", target="target", holdout=0.25, split_seed=3)
    bench_id = run_bench([wine], [_StoppedTandem("linear"), PlainPlayer("lightgbm")], seeds=[0, 1, 2, 3], budget=300,
                         results_dir=tmp_path)  # fmt: skip
    store = ResultsStore(tmp_path)
    text = " ".join(doc._budget_use(store, store.bench(bench_id)))
    assert "What ended tandem's 4 runs: the experiment budget: 2; " in text
    assert "the time budget: 1" in text and "the Scientist's stop rule, with time left: 1." in text
    assert "Median wall time of a game: tandem " in text and ", lightgbm " in text
    assert "tandem's experiment budget: 40 experiments (as the runs it ended state it: 4 of the 4 games" in text
    recorded = {"max_iters": 1000, "stop_reason": "time budget reached (300 s; about 9 s kept for delivery)"}
    assert doc._experiment_budget([{"details": recorded}]) == "1000 experiments"
    assert doc._experiment_budget([{"details": {"stop_reason": "time budget reached (60 s)"}}]) == "not recorded"
    linear_only = run_bench([wine], [PlainPlayer("linear")], seeds=[0], budget=300, results_dir=tmp_path)
    assert doc._budget_use(store, store.bench(linear_only)) == []
    spent = {"iteration": 3, "tokens": {"scientist": {"input": 900, "output": 200}}}
    token_stop = budget_exhausted(spent, RunContext(token_budget=1000, time_budget=None))
    assert doc.stop_kind(str(token_stop)) == "the token budget"
    assert doc.stop_kind("stopped by hand") == "another reason"
    # the 300 s bench's wage games: the search had nothing new to propose with 943 experiments left
    worth = (
        "the Scientist delivered: Delivering the incumbent: every idea in the playbook has been tried; expected gain"
    )
    worth += " of going on 0.1865 (about 0.00020 per candidate over the last 10 experiments, room for 943 more"
    assert doc.stop_kind(worth + " candidates in the experiment budget).") == doc.NO_NEW_IDEA
    spent_room = worth.replace("0.1865", "0.0010") + " candidates in the experiment budget)."
    assert doc.stop_kind(spent_room) == "the experiment budget"  # not worth going on: the room decided


def test_the_unseen_tasks_section_shows_only_a_bench_of_those_tasks(doc: ModuleType, tmp_path: Path) -> None:
    """The unseen-task section judges the goals on a bench of `benchmarks/unseen.toml`'s tasks
    alone: a suite bench is never shown there, and without a bench of those tasks it says so."""
    store = ResultsStore(tmp_path)
    wine = Task(name="wine", csv="sklearn:wine", target="target", holdout=0.25, split_seed=3)
    run_bench([wine], [PlainPlayer("linear"), PlainPlayer("lightgbm")], seeds=[0], results_dir=tmp_path)
    assert "Not measured yet" in "\n".join(doc._unseen_section(store))
    # a stand-in for an unseen task (its name is in unseen.toml; the data is bundled with scikit-learn)
    boston = Task(name="boston", csv="sklearn:diabetes", target="target", metric="rmse", holdout=0.25)
    unseen = run_bench([boston], [PlainPlayer("linear"), PlainPlayer("lightgbm")], seeds=[0], results_dir=tmp_path)
    text = "\n".join(doc._unseen_section(store))
    assert f"Bench `{unseen}`" in text and "| boston | rmse ↓ |" in text and "| wine |" not in text
    assert "the better plain baseline on every task" in text and "has the highest AUP" in text


def test_a_bench_that_reused_games_says_so_and_checks_the_players_it_played_again(
    doc: ModuleType, tmp_path: Path
) -> None:
    wine = Task(name="wine", csv="sklearn:wine", target="target", holdout=0.25, split_seed=3)
    players = [PlainPlayer("linear"), PlainPlayer("lightgbm")]
    store = ResultsStore(tmp_path)
    first = run_bench([wine], players, seeds=[0, 1], results_dir=tmp_path)
    second = run_bench([wine], players, seeds=[0, 1], results_dir=tmp_path, reuse=[Reuse.parse(f"{first}:lightgbm")])
    text = " ".join(doc._reuse_lines(store, store.bench(second)))
    assert (
        f"**Reused games.** 2 of this bench's 4 games were not played again: the games of lightgbm from bench `{first}`"
        in text
    )
    assert "in this many of their games: linear 2 of 2." in text  # the same split gives the plain model the same score
    assert doc._reuse_lines(store, store.bench(first)) == []


def test_means_are_compared_on_the_seeds_both_players_scored_and_the_paired_test_counts_tasks(
    doc: ModuleType, tmp_path: Path
) -> None:
    """Two means over different seeds would compare different splits; and a task's seeds share its
    data, so the paired test has one sample per task, not per task and seed."""

    def problem(scores: dict[str, float | None], higher: bool = True) -> SimpleNamespace:
        return SimpleNamespace(scores=scores, greater_is_better=higher)

    failed_once = [problem({"tandem": 0.9, "linear": 0.8}), problem({"tandem": None, "linear": 0.8})]
    assert doc._paired_gap(failed_once, "tandem", "linear") == -math.inf
    assert not doc._mean_at_least_as_good(failed_once, "tandem", "linear")
    rival_failed = [problem({"tandem": 0.7, "linear": 0.8}), problem({"tandem": 0.95, "linear": None})]
    assert doc._paired_gap(rival_failed, "tandem", "linear") == pytest.approx(-0.1)  # seed 0 alone, not 0.825 - 0.8
    lower = [problem({"tandem": 3.0, "linear": 4.0}, higher=False)]
    assert doc._paired_gap(lower, "tandem", "linear") == pytest.approx(1.0)
    assert doc._mean_at_least_as_good([problem({"tandem": 1.0, "linear": None})], "tandem", "linear")

    wine = Task(name="wine", csv="sklearn:wine", target="target", holdout=0.25, split_seed=3)
    iris = Task(name="iris", csv="sklearn:iris", target="target", holdout=0.25, split_seed=3)
    bench = run_bench(
        [wine, iris], [PlainPlayer("linear"), PlainPlayer("lightgbm")], seeds=[0, 1], results_dir=tmp_path
    )
    store = ResultsStore(tmp_path)
    text = "\n".join(doc._seeds_table(store, store.bench(bench)))
    assert "(Wilcoxon over tasks)" in text
    assert "(n = 2 tasks)" in text or "identical on all 2 tasks" in text


def test_notes_on_missed_goals_survive_a_regeneration_without_the_run_folders(doc: ModuleType, tmp_path: Path) -> None:
    """The ledgers behind the notes stay on the machine that ran the bench; regenerating the page
    elsewhere (for new speed figures, say) keeps the notes it wrote for the same bench, once marked."""
    from types import SimpleNamespace

    gone = {"player": "tandem", "details": {"run_dir": str(tmp_path / "not-here")}}
    report = SimpleNamespace(profiles=SimpleNamespace(players=["tandem", "linear"], problems=[]), rows=[gone])
    page = tmp_path / "benchmarks.md"
    note = "- **wells** (seed 0, accuracy): tandem delivered experiment #25 …"
    page.write_text(
        "*Generated by `scripts/benchmarks_doc.py` on 2026-12-03 12:45 UTC from x; do not edit by hand.*\n\n"
        f"Bench `b1`, started …\n\n## Goals\n\n| goal |\n\n### Where a goal is missed\n\n{note}\n\n## Tasks\n\n…\n"
    )
    kept = doc._missed_goal_notes(report, "b1", page)
    assert kept[0] == note and "generated on 2026-12-03 12:45 UTC" in kept[-1]
    page.write_text(page.read_text().replace(f"{note}\n", "\n".join(kept) + "\n"))  # the page as regenerated
    assert doc._missed_goal_notes(report, "b1", page) == kept  # marked once, with the first date
    assert doc._missed_goal_notes(report, "another-bench", page) == []  # another bench's notes are not this one's
