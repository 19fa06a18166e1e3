"""Crash safety: a run killed at any moment resumes to the same ledger as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tandem.api import resume_run, run_task
from tandem.graph.context import RunContext

ROOT = Path(__file__).resolve().parents[1]
ITERS = 5


def ledger(run_dir: Path) -> list[tuple[str | None, str, float | None]]:
    rows = [json.loads(line) for line in (run_dir / "experiments.jsonl").read_text().splitlines()]
    return [(r["spec_hash"], r["status"], None if r["primary"] is None else round(r["primary"], 10)) for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, titanic: Path) -> list[tuple[str | None, str, float | None]]:
    runs = tmp_path_factory.mktemp("reference")
    run_task(titanic, "Survived", run_id="ref", context=RunContext(runs_dir=str(runs), max_iters=ITERS))
    return ledger(runs / "ref")


def start(titanic: Path, runs: Path, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tandem.cli",
            "run",
            str(titanic),
            "--target",
            "Survived",
            "--max-iters",
            str(ITERS),
            "--runs-dir",
            str(runs),
            "--run-id",
            run_id,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"run ended before the kill point: {process.communicate()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.05)


def lines_in(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


KILL_POINTS: dict[str, Callable[[Path], bool]] = {
    "during setup": lambda run: (run / "run.json").exists(),
    "during training": lambda run: (
        lines_in(run / "experiments.jsonl") >= 2 and len(list((run / "cache").glob("*.json"))) >= 2
    ),
    "between nodes": lambda run: lines_in(run / "experiments.jsonl") >= 3,
    "during delivery": lambda run: (run / "model.joblib").exists() or (run / "model.tmp").exists(),
}


@pytest.mark.parametrize("moment", list(KILL_POINTS))
def test_sigkill_then_resume_gives_the_uninterrupted_ledger(
    moment: str, reference: list[tuple[str | None, str, float | None]], titanic: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    process = start(titanic, runs, "k")
    wait_until(lambda: KILL_POINTS[moment](runs / "k"), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    cache = runs / "k" / "cache"
    trained_before = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")} if cache.exists() else {}
    summary = resume_run("k", runs_dir=runs)
    assert summary["status"] == "delivered"
    assert ledger(runs / "k") == reference
    for name, mtime in trained_before.items():  # finished experiments were not trained again
        assert (cache / name).stat().st_mtime_ns == mtime, name


def test_ctrl_c_stops_cleanly_says_how_to_resume_and_resumes(
    reference: list[tuple[str | None, str, float | None]], titanic: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    process = start(titanic, runs, "c")
    wait_until(lambda: lines_in(runs / "c" / "experiments.jsonl") >= 2, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "tandem resume c" in err and "Traceback" not in err
    assert not (runs / "c" / "summary.json").exists()
    resume_run("c", runs_dir=runs)
    assert ledger(runs / "c") == reference


def test_resume_can_raise_the_iteration_budget(titanic: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    process = start(titanic, runs, "b")
    wait_until(lambda: lines_in(runs / "b" / "experiments.jsonl") >= 2, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    summary = resume_run("b", runs_dir=runs, max_iters=ITERS + 2)
    assert summary["iterations"] == ITERS + 2 or "Scientist delivered" in summary["stop_reason"]
    assert json.loads((runs / "b" / "run.json").read_text())["context"]["max_iters"] == ITERS + 2


def test_a_run_stopped_by_its_budget_continues_when_the_budget_is_raised(penguins: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = run_task(penguins, "species", run_id="p", context=RunContext(runs_dir=str(runs), max_iters=2))
    assert first["iterations"] == 2 and "iteration budget" in first["stop_reason"]
    again = resume_run("p", runs_dir=runs, max_iters=4)
    assert again["iterations"] == 4 or "Scientist delivered" in again["stop_reason"]
    ids = [json.loads(line)["id"] for line in (runs / "p" / "experiments.jsonl").read_text().splitlines()]
    assert ids == list(range(again["iterations"] + 1))  # continued, nothing duplicated
    assert resume_run("p", runs_dir=runs)["iterations"] == again["iterations"]  # nothing left to do
