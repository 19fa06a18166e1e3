"""Ctrl-C and SIGTERM end a command, its worker processes with it, even when the clean-up after
them hangs (tandem.stopping)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from crash import ROOT, assert_same_run, outcome, spawn, wait_until

from tandem.benchmarks.results_store import ResultsStore
from tandem.cli import main
from tandem.stopping import signals_stop_the_command

HANGS_AFTER_A_STOP = textwrap.dedent(
    """
    import sys, threading
    from tandem.stopping import signals_stop_the_command

    farewell = lambda: ("the command", "nothing was lost")
    with signals_stop_the_command(farewell, owns_process=True, seconds=float(sys.argv[1])):
        try:
            print("ready", flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)
            threading.Event().wait()  # a clean-up that never ends
    """
)

STARTED: list[subprocess.Popen[str]] = []

CTRL_C_IN_A_CALLBACK = textwrap.dedent(
    """
    import os, signal, threading, weakref
    from tandem.stopping import signals_stop_the_command

    class Node:
        pass

    def on_collected(_):
        os.kill(os.getpid(), signal.SIGINT)  # delivered before kill returns: the handler runs in this callback
        for _ in range(1000):
            pass

    with signals_stop_the_command(lambda: ("the command", "nothing was lost"), owns_process=True):
        try:
            node = Node()
            ref = weakref.ref(node, on_collected)
            del node  # Python prints the callback's KeyboardInterrupt and drops it
            print("went on", flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            print("caught", flush=True)
    """
)


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    yield
    while STARTED:
        STARTED.pop().kill()  # a failed test's child may still be hanging


def command(script: str, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"},  # its stack dump is not the line
    )
    STARTED.append(process)
    return process


def hanging_command(seconds: float) -> subprocess.Popen[str]:
    process = command(HANGS_AFTER_A_STOP, str(seconds))
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


@pytest.mark.parametrize("signum, name, code", [(signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, "SIGTERM", 143)])
def test_a_stop_that_hangs_is_ended_with_the_farewell_once_its_time_is_up(signum: int, name: str, code: int):
    process = hanging_command(2.0)
    started = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code
    assert "stopping" in out
    assert err.strip() == f"tandem: the command had not stopped 2 s after {name}, so it was ended; nothing was lost"
    assert time.monotonic() - started >= 2.0


def test_a_second_ctrl_c_ends_a_hanging_stop_at_once():
    process = hanging_command(600.0)
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None and process.stdout.readline() == "stopping\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)  # not the 600 s
    assert process.returncode == 130
    assert err.strip() == "tandem: the command was ended by a second Ctrl-C; nothing was lost"


def test_a_ctrl_c_that_python_drops_in_a_callback_still_ends_the_command_at_once():
    process = command(CTRL_C_IN_A_CALLBACK)
    out, err = process.communicate(timeout=60)  # not the 600 s, and not forever
    assert process.returncode == 130
    assert out == "" and err.strip() == "tandem: the command stopped; nothing was lost"


def test_without_a_signal_the_usual_handlers_are_back_after_the_block():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with signals_stop_the_command(lambda: ("unused", "unused"), owns_process=True):
        assert all(signal.getsignal(signum) is not handler for signum, handler in before.items())
    assert all(signal.getsignal(signum) is handler for signum, handler in before.items())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # an orphan's zombie waits for init
    except psutil.NoSuchProcess:
        return False


PENGUINS = ["run", str(ROOT / "examples" / "data" / "penguins.csv"), "--target", "species", "--max-iters", "1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    runs = tmp_path_factory.mktemp("reference")
    assert main([*PENGUINS, "--n-jobs", "2", "--runs-dir", str(runs), "--run-id", "ref"]) == 0
    return outcome(runs / "ref")


@contextmanager
def paused_in_a_fold(argv: list[str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`tandem ARGV` started and paused in its first fold fit (for 600 s): the process, the pid of
    the process that fits, and the log. The command does not outlive the block."""
    marker, log = tmp_path / "paused.json", tmp_path / "command.log"
    process = spawn(argv, log, "fold_fit", marker)
    try:
        wait_until(marker.exists, process, "a fold fit", timeout=300)
        yield process, json.loads(marker.read_text())["pid"], log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def last_line(log: Path) -> str:
    return log.read_text(errors="replace").strip().splitlines()[-1]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_a_run_stops_its_fold_workers_too_and_the_run_resumes_the_same(
    tmp_path: Path, signum: int, code: int, uninterrupted: dict[str, Any]
):
    """`kill -INT` or `kill` (SIGTERM) reaches the run's process alone, not its fold workers, as a
    terminal's Ctrl-C would: the run must still stop at once, take its workers with it, and record
    nothing of the step it stopped."""
    runs = tmp_path / "runs"
    with paused_in_a_fold([*PENGUINS, "--n-jobs", "2", "--runs-dir", str(runs), "--run-id", "r"], tmp_path) as (
        process,
        worker,
        log,
    ):
        assert worker != process.pid, log.read_text(errors="replace")  # the fit waits in a joblib worker
        assert alive(worker), f"the paused worker {worker} is gone: {log.read_text(errors='replace')[-4000:]}"
        process.send_signal(signum)
        assert process.wait(timeout=60) == code, log.read_text(errors="replace")
    said = last_line(log)
    assert said == f"tandem: the run stopped; progress is saved. Continue with: tandem resume r --runs-dir {runs}"
    deadline = time.monotonic() + 30
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(worker):
        psutil.Process(worker).kill()
        raise AssertionError("the fold worker outlived its run")
    assert main(said.partition("Continue with: tandem ")[2].split()) == 0
    assert_same_run(runs / "r", uninterrupted)  # the stopped fold was not recorded as a failure


def test_a_second_ctrl_c_ends_a_run_whose_fold_cannot_stop_and_it_resumes_the_same(
    tmp_path: Path, uninterrupted: dict[str, Any]
):
    """At `--n-jobs 1` the fold fits in the step's own thread, which no signal interrupts, so the
    first Ctrl-C waits for it (up to STOP_SECONDS); a second one ends the run at once, and the
    printed line resumes it to the same run."""
    runs = tmp_path / "runs"
    with paused_in_a_fold([*PENGUINS, "--n-jobs", "1", "--runs-dir", str(runs), "--run-id", "r"], tmp_path) as (
        process,
        fitting,
        log,
    ):
        assert fitting == process.pid  # no worker: the step's thread waits
        process.send_signal(signal.SIGINT)
        time.sleep(1.0)  # two signals at once would be one
        assert process.poll() is None  # the first Ctrl-C waits for the fold
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130, log.read_text(errors="replace")
    resume = f"tandem resume r --runs-dir {runs}"
    assert last_line(log) == f"tandem: the run was ended by a second Ctrl-C; progress is saved. Continue with: {resume}"
    assert main(resume.split()[1:]) == 0
    assert_same_run(runs / "r", uninterrupted)


def test_a_stopped_bench_says_how_it_goes_on_and_goes_on(tmp_path: Path):
    """A bench stopped in a game names its own `--resume`; the resumed bench plays what is left."""
    results = tmp_path / "results"
    (tmp_path / "tasks.toml").write_text('[[tasks]]\nname = "wine"\ncsv = "sklearn:wine"\ntarget = "target"\n')
    bench = ["bench", "--tasks", str(tmp_path / "tasks.toml"), "--players", "tandem:max_iters=1", "--budget", "60"]
    with paused_in_a_fold([*bench, "--results-dir", str(results)], tmp_path) as (process, _, log):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143, log.read_text(errors="replace")
    said = last_line(log)
    assert said.startswith("tandem: the bench stopped;") and "Traceback" not in log.read_text(errors="replace")
    resume = said.partition("Continue with: tandem ")[2].split()
    assert resume[:2] == ["bench", "--resume"] and resume[3:] == ["--results-dir", str(results)]
    assert main(resume) == 0
    stored = ResultsStore(results).results(resume[2])
    assert sorted(r["player"] for r in stored) == ["linear", "tandem:max_iters=1"]
    assert all(r["status"] == "ok" for r in stored)
