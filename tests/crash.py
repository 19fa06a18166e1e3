"""Helpers of the crash tests (test_resume, test_timetravel, test_postgres): kill a run at a known point, compare runs.

A run is started as a child process with the test hook of `tandem.tools.pause_points`
(`TANDEM_TEST_PAUSE_AT`), which makes it write a marker and wait at that point; the test waits
for the marker, checks the paused process is the child and still running, and SIGKILLs it.
Two runs are "the same" when everything they decided is equal: the whole ledger but for fit
times, every reward event, and the summary but for the run's name, paths and clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from tandem.api import run_task
from tandem.graph.context import RunContext
from tandem.tools.pause_points import PAUSE_AT, PAUSE_MARKER

ROOT = Path(__file__).resolve().parents[1]
TIMING_FIELDS = frozenset({"fit_seconds"})
"""Ledger fields that measure time, not outcome: the only ones allowed to differ after a resume."""
RUN_SPECIFIC = frozenset({"run_id", "seconds_spent", "artifacts", "model_sha256"})
"""Summary fields that name the run folder or measure time, and the model file's hash: pickle
memoises by object identity, so the same model pickles to other bytes in a process whose equal
strings are distinct objects (a resumed run's, read back from its checkpoint). The model itself
is compared by its predictions (`outcome`)."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def lines_in(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def outcome(run_dir: Path) -> dict[str, Any]:
    """Everything a run decided: ledger without timings, reward events, summary without paths and clocks."""
    ledger = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in read_jsonl(run_dir / "experiments.jsonl")]
    summary = json.loads((run_dir / "summary.json").read_text())
    task = summary["task"]
    rows = pd.read_csv(task["csv_path"]).drop(columns=[task["target"]])
    model = joblib.load(run_dir / "model.joblib")
    predicted = model.predict_proba(rows) if task["task_type"] != "regression" else model.predict(rows)
    return {
        "ledger": ledger,
        "rewards": read_jsonl(run_dir / "rewards.jsonl"),
        "summary": {k: v for k, v in summary.items() if k not in RUN_SPECIFIC},
        "predictions": np.asarray(predicted).tolist(),
    }


def reference_outcome(csv: Path, target: str, runs: Path, iters: int, folds: int) -> dict[str, Any]:
    """The uninterrupted run every crash test compares against (checkpoints in SQLite, one process)."""
    run_task(csv, target, folds=folds, run_id="ref", context=RunContext(runs_dir=str(runs), max_iters=iters, n_jobs=1))
    ref = outcome(runs / "ref")
    check_reference(ref, iters + 1)
    return ref


def check_reference(reference: dict[str, Any], experiments: int) -> None:
    """A comparison is only as strong as what it covers: every decision of a run must be in it
    (`experiments` searched ones; on small data delivery adds its blend's row after them)."""
    searched = [r for r in reference["ledger"] if r["move"] != "delivery_blend"]
    assert len(searched) == experiments and len(reference["rewards"]) == 2 * (experiments - 1)
    assert reference["ledger"][: len(searched)] == searched and len(reference["ledger"]) <= experiments + 1
    for key in (
        "spec_hash",
        "status",
        "fold_scores",
        "gain",
        "significant",
        "fidelity",
        "verification",
        "rewards",
        "tokens",
        "incumbent_after",
    ):
        assert key in reference["ledger"][-1], key
    assert reference["summary"]["best"]["holdout"] and reference["summary"]["baseline"]["holdout"]


def assert_same_run(run_dir: Path, reference: dict[str, Any]) -> None:
    got = outcome(run_dir)
    assert len(got["ledger"]) == len(reference["ledger"])
    for mine, theirs in zip(got["ledger"], reference["ledger"], strict=True):
        assert mine == theirs, f"experiment #{theirs['id']} differs"
    assert got["rewards"] == reference["rewards"]
    assert got["summary"]["best"] == reference["summary"]["best"]  # spec, CV and holdout scores
    assert got["summary"]["baseline"]["holdout"] == reference["summary"]["baseline"]["holdout"]
    assert got["summary"] == reference["summary"]
    assert got["predictions"] == reference["predictions"]  # the delivered model, exactly


def spawn(argv: list[str], log: Path, pause: str | None = None, marker: Path | None = None) -> subprocess.Popen[bytes]:
    """`tandem ARGV` in a child process, output to `log`; with `pause`, the child stops at that point."""
    env = {k: v for k, v in os.environ.items() if k not in (PAUSE_AT, PAUSE_MARKER)}
    env["PYTHONFAULTHANDLER"] = "1"  # a native crash (exit -11) leaves every thread's Python stack in the log
    if pause is not None:
        assert marker is not None
        env[PAUSE_AT], env[PAUSE_MARKER] = pause, str(marker)
    with log.open("wb") as out:  # a file, so a full pipe never stalls the child
        return subprocess.Popen(
            [sys.executable, "-m", "tandem.cli", *argv], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_until(
    condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str, timeout: float = 600.0
) -> None:
    """Poll until `condition` holds; the child must stay alive meanwhile. The timeout is generous:
    on small data every candidate is scored on 3 x 5 folds, and a shared 2-core machine is slow."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended (code {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)


def kill_when_paused(process: subprocess.Popen[bytes], marker: Path, log: Path, point: str) -> None:
    """Wait until the child is paused at `point`, check it is alive there, and SIGKILL it.

    On any failure the child is killed too, so a paused process never outlives the test.
    """
    try:
        try:
            wait_until(marker.exists, process, f"the pause at {point}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from None
        paused = json.loads(marker.read_text())
        assert paused["point"] == point.partition("@")[0]
        assert paused["pid"] == process.pid  # the child itself is at the point (one job: folds run in-process)
        assert process.poll() is None  # alive when killed…
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL  # …and it ended by this kill, not on its own
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
