"""Crash safety: a run killed at any moment resumes to exactly the run an uninterrupted one makes.

"Exactly" means the whole ledger (every field but the fit time: spec, scores of every fold,
gain, significance, fidelity, the verifier's issues, rewards, tokens, the incumbent after each
step), every reward event in `rewards.jsonl`, and the summary (best model, holdout scores of it
and of the baseline, reward totals, stop reason), all against a run with the same seed.

Kill points land where they say, provably: the run is started with the test hook of
`tandem.tools.pause_points` (`TANDEM_TEST_PAUSE_AT`), which makes the process write a marker
and wait at that point — inside a fold fit, inside a checkpoint commit, inside delivery. The
test waits for the marker, checks the process is the one paused and still running, and kills
it with SIGKILL. Runs use one job (`--n-jobs 1`) so fold fits happen in the run's own process
and the N-th fold fit is the same one every time.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from crash import assert_same_run, kill_when_paused, lines_in, reference_outcome, spawn, wait_until

from tandem.api import resume_run, run_task
from tandem.cli import main
from tandem.graph.context import RunContext

ITERS = 4
FOLDS = 3
"""Few folds and experiments keep the file short: penguins' 275 development rows are scored on 3
repeats of the folds, so a candidate is 9 fold fits (baseline 1–9, experiment #1 10–18, #2 19–27)."""


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, penguins: Path) -> dict[str, Any]:
    return reference_outcome(penguins, "species", tmp_path_factory.mktemp("reference"), ITERS, FOLDS)


def start(penguins: Path, runs: Path, run_id: str, pause: str | None = None) -> subprocess.Popen[bytes]:
    """`tandem run` in a child process; with `pause`, the child stops at that point."""
    runs.mkdir(parents=True, exist_ok=True)
    argv = ["run", str(penguins), "--target", "species", "--max-iters", str(ITERS), "--folds", str(FOLDS)]
    argv += ["--n-jobs", "1", "--runs-dir", str(runs), "--run-id", run_id]
    return spawn(argv, runs.parent / f"{run_id}.log", pause, runs.parent / f"{run_id}.paused.json")


def kill_at(process: subprocess.Popen[bytes], runs: Path, run_id: str, point: str) -> None:
    kill_when_paused(process, runs.parent / f"{run_id}.paused.json", runs.parent / f"{run_id}.log", point)


def cached(run_dir: Path) -> dict[str, int]:
    """Fold-score cache entries and their modification times."""
    cache = run_dir / "cache"
    return {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")} if cache.exists() else {}


def in_the_baselines_cross_validation(run: Path) -> None:
    """Fold fits 1–9 are the baseline's, inside setup: nothing is in the ledger or the cache yet."""
    assert (run / "run.json").exists() and not (run / "experiments.jsonl").exists()
    assert cached(run) == {}


def in_the_second_experiments_cross_validation(run: Path) -> None:
    """Fold fits 19–27 are experiment #2's: the baseline and #1 are done, #2 is not."""
    assert lines_in(run / "experiments.jsonl") == 2
    assert len(cached(run)) == 2


def in_a_checkpoint_commit(run: Path) -> None:
    """Half-way through the run's ~47 commits; the database the kill left is sound."""
    assert 1 <= lines_in(run / "experiments.jsonl") <= ITERS
    with sqlite3.connect(run / "checkpoints.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def in_delivery(run: Path) -> None:
    """The model file is written, the summary is not."""
    assert (run / "model.joblib").exists() and not (run / "summary.json").exists()
    assert lines_in(run / "experiments.jsonl") == ITERS + 1


# kill point -> what the run folder must show right after the kill, which places it in the run
KILL_POINTS: dict[str, Callable[[Path], None]] = {
    "fold_fit@2": in_the_baselines_cross_validation,
    "fold_fit@22": in_the_second_experiments_cross_validation,
    "checkpoint_write@25": in_a_checkpoint_commit,
    "delivery": in_delivery,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_gives_the_uninterrupted_run(
    point: str, reference: dict[str, Any], penguins: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    process = start(penguins, runs, "k", pause=point)
    kill_at(process, runs, "k", point)
    KILL_POINTS[point](runs / "k")
    trained_before = cached(runs / "k")
    summary = resume_run("k", runs_dir=runs)
    assert summary["status"] == "delivered"
    assert_same_run(runs / "k", reference)
    after = cached(runs / "k")
    for name, mtime in trained_before.items():  # finished experiments were not trained again
        assert after[name] == mtime, name


def test_ctrl_c_stops_cleanly_says_how_to_resume_and_resumes(
    reference: dict[str, Any], penguins: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    process = start(penguins, runs, "c")
    wait_until(lambda: lines_in(runs / "c" / "experiments.jsonl") >= 2, process, "the first experiment")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130, (runs.parent / "c.log").read_text(errors="replace")
    err = (runs.parent / "c.log").read_text()
    assert "tandem resume c" in err and "Traceback" not in err
    assert not (runs / "c" / "summary.json").exists()
    resume_run("c", runs_dir=runs)
    assert_same_run(runs / "c", reference)


def test_resume_can_raise_the_iteration_budget(penguins: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    process = start(penguins, runs, "b", pause="fold_fit@14")  # inside experiment #1
    kill_at(process, runs, "b", "fold_fit@14")
    summary = resume_run("b", runs_dir=runs, max_iters=ITERS + 2)
    assert summary["iterations"] == ITERS + 2 or "Scientist delivered" in summary["stop_reason"]
    assert json.loads((runs / "b" / "run.json").read_text())["context"]["max_iters"] == ITERS + 2


def test_a_run_stopped_by_its_budget_continues_when_the_budget_is_raised(penguins: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    context = RunContext(runs_dir=str(runs), max_iters=2, n_jobs=1)
    first = run_task(penguins, "species", folds=FOLDS, run_id="p", context=context)
    assert first["iterations"] == 2 and "iteration budget" in first["stop_reason"]
    again = resume_run("p", runs_dir=runs, max_iters=4, force=True)  # delivered: continuing replaces its model
    assert again["iterations"] == 4 or "Scientist delivered" in again["stop_reason"]
    ledger = [json.loads(line) for line in (runs / "p" / "experiments.jsonl").read_text().splitlines()]
    assert [r["id"] for r in ledger] == list(range(len(ledger)))  # continued, nothing duplicated
    searched = [r for r in ledger if r["move"] != "delivery_blend"]  # each delivery may add its blend (small data)
    assert len(searched) == again["iterations"] + 1 and len(ledger) - len(searched) <= 2
    assert resume_run("p", runs_dir=runs)["iterations"] == again["iterations"]  # nothing left to do


def test_a_delivered_run_stopped_while_it_goes_on_is_not_shown_delivered_and_resume_continues_it(
    penguins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`resume --force` with a raised budget, then Ctrl-C once an experiment has run: the run is in
    the middle of its search again, so the folder must not say "delivered" (`tandem resume` said
    "finished" and did nothing), while the model it delivered before still predicts until it delivers again."""
    runs, where = tmp_path / "runs", ["--runs-dir", str(tmp_path / "runs")]
    context = RunContext(runs_dir=str(runs), max_iters=1, n_jobs=1)
    run_task(penguins, "species", folds=FOLDS, run_id="g", context=context)

    def ctrl_c_after_an_experiment(node: str, update: dict[str, Any]) -> None:
        if node == "reward":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resume_run("g", runs_dir=runs, max_iters=3, force=True, on_update=ctrl_c_after_an_experiment)
    assert main(["show", "g", *where]) == 2
    assert "has not delivered again; continue it with: tandem resume g --runs-dir" in capsys.readouterr().err
    assert main(["runs", *where]) == 0 and re.search(r"\sg\s+stopped\s", capsys.readouterr().out)
    assert main(["predict", "g", str(penguins), *where, "-o", str(tmp_path / "p.csv")]) == 0
    assert "the model it delivered before" in capsys.readouterr().out
    assert main(["resume", "g", *where, "--plain", "--n-jobs", "1"]) == 0  # no --force, no budget: it goes on
    summary = json.loads((runs / "g" / "summary.json").read_text())
    assert summary["iterations"] == 3 or "Scientist delivered" in summary["stop_reason"]
    assert not (runs / "g" / "summary.previous.json").exists()
