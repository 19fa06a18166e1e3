"""Run folders you can trust: the data read once, folders that move and copy, one writer at a time.

Each test drives tandem as a user does (the `tandem` command in a child process where a second
process or a kill is part of the story) and checks the folder on disk afterwards.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import ormsgpack
import pandas as pd
import pytest

import tandem.graph.persistence as persistence
import tandem.tools.data as data
from tandem.api import open_run, resume_run, run_config, run_task
from tandem.cli import main
from tandem.graph.context import RunContext
from tandem.graph.persistence import (
    RunFolder,
    RunInUse,
    atomic_file,
    new_run_folder,
    profile_of,
    run_folder,
    run_lock,
)
from tandem.tools.data import InputError
from tandem.tools.pause_points import PAUSE_AT, PAUSE_MARKER

ROOT = Path(__file__).resolve().parents[1]
ITERS = 3
KILLED_AFTER = 2
"""Ledger rows (the baseline and experiment #1) a run has written when it is killed: a run in mid-flight."""


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def spawn(*argv: str, log: Path, pause: str | None = None, marker: Path | None = None) -> subprocess.Popen[bytes]:
    """`tandem ARGV` as a child process, its output in `log` and its errors beside it (`errors_of`);
    with `pause`, it stops at that point (tools/pause_points.py)."""
    env = {k: v for k, v in os.environ.items() if k not in (PAUSE_AT, PAUSE_MARKER, "TANDEM_RUNS_DIR")}
    if pause is not None:
        assert marker is not None
        env[PAUSE_AT], env[PAUSE_MARKER] = pause, str(marker)
    with log.open("wb") as out, errors_of(log).open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "tandem.cli", *argv], cwd=ROOT, env=env, stdout=out, stderr=err)


def errors_of(log: Path) -> Path:
    return log.with_suffix(".err")


def tandem(*argv: str, tmp: Path) -> tuple[int, str, str]:
    """Run `tandem ARGV` to its end; its exit code, output and errors."""
    log = tmp / f"log-{time.monotonic_ns()}.txt"
    process = spawn(*argv, log=log)
    code = process.wait(timeout=600)
    return code, log.read_text(errors="replace"), errors_of(log).read_text(errors="replace")


def wait_for(path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"ended with {process.returncode} before {path.name}: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def killed_run(csv: Path, runs: Path, run_id: str, tmp: Path) -> Path:
    """A run SIGKILLed after its first experiment, on its way to the next: a stopped, undelivered run."""
    log = tmp / f"{run_id}.log"
    argv = ["run", str(csv), "--target", "species", "--max-iters", str(ITERS), "--n-jobs", "1"]
    process = spawn(*argv, "--runs-dir", str(runs), "--run-id", run_id, "--plain", log=log)
    ledger = runs / run_id / "experiments.jsonl"
    deadline = time.monotonic() + 180
    while not (ledger.exists() and len(ledger.read_text().splitlines()) >= KILLED_AFTER):
        assert process.poll() is None, f"ended with {process.returncode} before the kill: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the run never got to its first experiment"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL  # killed, not ended on its own
    folder = runs / run_id
    assert (folder / "run.json").exists() and not (folder / "summary.json").exists()
    return folder


def decisions(folder: Path) -> dict[str, Any]:
    """What a run decided: its ledger (without fit times) and every reward it paid."""
    rows = [json.loads(line) for line in (folder / "experiments.jsonl").read_text().splitlines()]
    events = [json.loads(line) for line in (folder / "rewards.jsonl").read_text().splitlines()]
    return {"ledger": [{k: v for k, v in r.items() if k != "fit_seconds"} for r in rows], "rewards": events}


def assert_decided_like(folder: Path, reference: dict[str, Any]) -> None:
    """The run in `folder` decided exactly what the reference run did (says where it did not)."""
    got = decisions(folder)
    assert len(got["ledger"]) == len(reference["ledger"])
    for mine, theirs in zip(got["ledger"], reference["ledger"], strict=True):
        differing = {k: (mine.get(k), v) for k, v in theirs.items() if mine.get(k) != v}
        assert not differing, f"experiment #{theirs['id']} differs: {differing}"
    assert got["rewards"] == reference["rewards"]


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under `root`: its bytes' hash and its modification time."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, penguins: Path) -> dict[str, Any]:
    """The same task run without interruption (the CLI's defaults, one job, as the killed runs)."""
    runs = tmp_path_factory.mktemp("reference")
    code, out, err = tandem(
        "run", str(penguins), "--target", "species", "--max-iters", str(ITERS), "--n-jobs", "1",
        "--runs-dir", str(runs), "--run-id", "ref", "--plain", tmp=runs,
    )  # fmt: skip
    assert code == 0, out + err
    done = decisions(runs / "ref")
    searched = [r for r in done["ledger"] if r["move"] != "delivery_blend"]  # then, on small data, delivery's blend
    assert len(searched) == ITERS + 1 and len(done["ledger"]) <= ITERS + 2 and len(done["rewards"]) == 2 * ITERS
    return done


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory, penguins: Path) -> Path:
    """One run killed in mid-flight (`killed_run`), made once: each test resumes its own copy of it."""
    runs = tmp_path_factory.mktemp("killed")
    return killed_run(penguins, runs, "x", runs)


def placed(killed: Path, runs: Path) -> Path:
    """A copy of the killed run under its own id in `runs`: to the run, a folder moved there."""
    return Path(shutil.copytree(killed, runs / killed.name, symlinks=True))


# ---------------------------------------------------------------------------------------------
# Movable, copyable folders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["another runs folder", "the same runs folder"])
def test_resuming_a_copy_leaves_the_original_byte_identical(
    where: str, reference: dict[str, Any], killed: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    original = placed(killed, runs)
    runs2 = tmp_path / "runs2" if where == "another runs folder" else runs
    shutil.copytree(original, runs2 / "x-bak", symlinks=True)  # cp -a
    before = snapshot(original)

    code, out, err = tandem("resume", "x-bak", "--runs-dir", str(runs2), "--plain", tmp=tmp_path)

    assert code == 0, out + err
    assert snapshot(original) == before  # not one byte, not one time stamp of the original changed
    assert sorted(p.name for p in runs.iterdir()) == (["x"] if runs2 != runs else ["x", "x-bak"])
    assert_decided_like(runs2 / "x-bak", reference)  # the copy went on from where the original stopped
    stored = json.loads((runs2 / "x-bak" / "run.json").read_text())
    assert stored["run_id"] == "x-bak" and stored["copied_from"] == "x"  # its own id, and its thread
    assert f"report: {runs2 / 'x-bak' / 'report.html'}" in main_output("show", "x-bak", "--runs-dir", str(runs2))

    if runs2 == runs:  # The original, beside its resumed copy, still resumes to the same run.
        code, out, err = tandem("resume", "x", "--runs-dir", str(runs), "--plain", tmp=tmp_path)
        assert code == 0, out + err
        assert_decided_like(original, reference)


def main_output(*argv: str) -> str:
    """What `tandem ARGV` prints, run in this process."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


def test_a_moved_run_resumes_to_the_uninterrupted_ledger_and_every_command_works_where_it_lands(
    reference: dict[str, Any], killed: Path, penguins: Path, tmp_path: Path
) -> None:
    runs, disk2, disk3 = tmp_path / "runs", tmp_path / "disk2" / "runs", tmp_path / "disk3"
    placed(killed, runs)
    disk2.mkdir(parents=True)
    shutil.move(runs / "x", disk2 / "x")
    shutil.rmtree(runs)  # the old place is gone

    code, out, err = tandem("resume", "x", "--runs-dir", str(disk2), "--plain", tmp=tmp_path)
    assert code == 0, out + err
    assert_decided_like(disk2 / "x", reference)
    assert not runs.exists()  # nothing was written where the run used to be

    disk3.mkdir()
    shutil.move(disk2 / "x", disk3 / "x")  # delivered, and moved again
    for path in (disk3 / "x").rglob("*"):  # no file names the folder's old places
        if path.is_file():
            content = path.read_bytes()
            for old in (killed, runs, disk2):
                assert str(old).encode() not in content, (path.name, old)

    code, out, err = tandem("predict", "x", str(penguins), "--runs-dir", str(disk3), tmp=tmp_path)
    assert code == 0, out + err
    assert out.splitlines()[0].startswith('"prediction"') and len(out.splitlines()) == 345  # header + every row
    code, out, err = tandem("history", "x", "--runs-dir", str(disk3), tmp=tmp_path)
    assert code == 0 and "deliver" in out, out + err
    step = next(line.split()[0] for line in out.splitlines() if " reward " in f" {line} ")
    code, out, err = tandem(
        "fork", "x", "--from", step, "--run-id", "m2", "--runs-dir", str(disk3), "--plain", tmp=tmp_path
    )
    assert code == 0, out + err
    assert json.loads((disk3 / "m2" / "summary.json").read_text())["status"] == "delivered"
    assert f"Report: {disk3 / 'm2' / 'report.html'}" in out


# ---------------------------------------------------------------------------------------------
# One writer per run
# ---------------------------------------------------------------------------------------------


def test_two_concurrent_resumes_one_proceeds_and_the_other_exits_2(
    reference: dict[str, Any], killed: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    placed(killed, runs)
    marker = tmp_path / "resumed.paused"
    # Both start together; whichever takes the lock stops inside its first training (the test hook)
    # and holds the lock there, so the other certainly finds the run in use.
    both = [
        spawn(
            "resume",
            "x",
            "--runs-dir",
            str(runs),
            "--plain",
            log=tmp_path / f"r{i}.log",
            pause="fold_fit",
            marker=marker,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 180
    while all(p.poll() is None for p in both):
        assert time.monotonic() < deadline, "neither resume ended"
        time.sleep(0.05)
    loser = next(i for i, p in enumerate(both) if p.poll() is not None)
    winner = both[1 - loser]
    wait_for(marker, winner, tmp_path / f"r{1 - loser}.log")
    assert json.loads(marker.read_text())["pid"] == winner.pid  # the one that proceeded is training
    assert both[loser].returncode == 2
    assert (tmp_path / f"r{loser}.log").read_text() == ""
    assert errors_of(tmp_path / f"r{loser}.log").read_text().splitlines() == [
        f"tandem: run x is in use by pid {winner.pid}"
    ]

    os.kill(winner.pid, signal.SIGKILL)  # a crash: the OS releases the lock
    winner.wait(timeout=30)
    code, out, err = tandem("resume", "x", "--runs-dir", str(runs), "--plain", tmp=tmp_path)
    assert code == 0, out + err
    assert_decided_like(runs / "x", reference)


def test_the_lock_refuses_a_second_holder_and_is_free_again_after(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "r")
    folder.path.mkdir()
    with run_lock(folder), pytest.raises(RunInUse, match=rf"^run r is in use by pid {os.getpid()}$"), run_lock(folder):
        pass
    with run_lock(folder):  # released when the holder is done
        pass


def test_a_run_id_is_taken_by_exactly_one_of_many_at_once(tmp_path: Path) -> None:
    folder = run_folder(tmp_path, "same")
    start, entered, refused = threading.Barrier(8), [], []

    def claim() -> None:
        start.wait()
        try:
            with new_run_folder(folder, exists="taken"):
                entered.append(1)
                (folder.path / "run.json").write_text("{}")
                time.sleep(0.2)
        except InputError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(entered) == 1 and len(refused) == 7
    assert all(r == "taken" or r.startswith("run same is in use by pid") for r in refused)


def test_atomic_files_never_leave_a_half_file_or_a_shared_temporary(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(path) as fh:
        fh.write(b"half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]

    def write(i: int) -> None:
        for _ in range(20):
            persistence.write_text(path, str(i) * 5000)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = path.read_text()
    assert len(text) == 5000 and len(set(text)) == 1  # one writer's whole file, never a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------
# Run ids, failed setups, delivered runs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["../x", "ABSOLUTE", ";id>pwned", ".hidden", "a/b", "..", "x y"])
def test_hostile_run_ids_are_one_line_exit_2_and_make_no_folder(
    run_id: str, penguins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "deep" / "runs"
    run_id = str(tmp_path / "abs") if run_id == "ABSOLUTE" else run_id
    commands = [
        ["run", str(penguins), "--target", "species", "--run-id", run_id],
        ["resume", run_id],
        ["show", run_id],
        ["history", run_id],
        ["predict", run_id, str(penguins)],
    ]
    for argv in commands:
        assert main([*argv, "--runs-dir", str(runs)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "is not allowed: use letters, digits" in err[0], err
    assert list(tmp_path.rglob("*")) == []  # no folder anywhere: not under runs, not beside it


def test_a_run_id_read_as_an_option_is_refused_before_a_folder_is_made(
    penguins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--run-id=-v` reaches tandem, but `tandem resume -v` never would: argparse takes it for an
    option, so a run named so could be made and not resumed, shown or forked by its name."""
    runs = tmp_path / "runs"
    assert main(["run", str(penguins), "--target", "species", "--run-id=-v", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "not starting with '.' or '-'" in err[0], err
    with pytest.raises(InputError, match=re.escape("not starting with '.' or '-'")):
        run_task(penguins, "species", run_id="-v", context=RunContext(runs_dir=runs))
    assert not runs.exists()


def test_a_failed_setup_leaves_no_folder_and_the_same_id_works_after_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv, runs = tmp_path / "inf.csv", tmp_path / "runs"
    # values near float64's limit: the scaled linear baseline's squares overflow (infinities are read as missing)
    rows = [f"{i / 7:.3f},{'1e308' if i % 3 == 0 else i % 5},{'p' if i % 2 else 'q'}" for i in range(200)]
    csv.write_text("a,b,y\n" + "\n".join(rows) + "\n")
    argv = ["run", str(csv), "--target", "y", "--run-id", "inf", "--max-iters", "1", "--n-jobs", "1"]
    assert main([*argv, "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "the baseline model could not be trained" in err[0], err
    assert not (runs / "inf").exists()

    csv.write_text(csv.read_text().replace("1e308", "4"))
    assert main([*argv, "--runs-dir", str(runs)]) == 0
    assert json.loads((runs / "inf" / "summary.json").read_text())["status"] == "delivered"


def test_a_delivered_run_is_not_overwritten_by_a_resume_without_force(
    penguins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    run_task(penguins, "species", run_id="d", context=RunContext(runs_dir=str(runs), max_iters=1, n_jobs=1))
    folder = runs / "d"
    artifacts = json.loads((folder / "summary.json").read_text())["artifacts"].values()
    kept = {name: (folder / name).read_bytes() for name in artifacts}

    assert main(["resume", "d", "--runs-dir", str(runs)]) == 0  # nothing to do: a no-op
    capsys.readouterr()
    assert main(["resume", "d", "--runs-dir", str(runs), "--max-iters", "3"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "was delivered" in err[0] and "--force" in err[0]
    assert json.loads((folder / "run.json").read_text())["context"]["max_iters"] == 1  # not even the budget

    for name in ("checkpoints.sqlite", "checkpoints.sqlite-wal", "checkpoints.sqlite-shm"):
        if (folder / name).exists():
            (folder / name).write_bytes(b"")  # emptied: resuming would start from scratch
    # (without a raised budget, resume of a finished run only says how to continue: a no-op)
    assert main(["resume", "d", "--runs-dir", str(runs), "--max-iters", "3"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "checkpoints are gone" in err[0] and "--force" in err[0]
    assert "fork" not in err[0]  # a fork starts from a checkpoint: there is none to offer
    assert {name: (folder / name).read_bytes() for name in artifacts} == kept

    assert main(["resume", "d", "--runs-dir", str(runs), "--force", "--max-iters", "2"]) == 0
    assert json.loads((folder / "summary.json").read_text())["iterations"] == 2


# ---------------------------------------------------------------------------------------------
# Read once
# ---------------------------------------------------------------------------------------------

_opened: list[tuple[str, str]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | Path):
        path, mode, flags = args
        if mode is None:  # os.open: the flags say whether it writes
            mode = "w" if flags & (os.O_WRONLY | os.O_RDWR) else "r"
        _opened.append((Path(path).name, mode))


sys.addaudithook(_audit)


@contextmanager
def opened_files() -> Iterator[list[tuple[str, str]]]:
    """The (name, mode) of every file this process opens meanwhile (Python's `open` audit event)."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def test_a_run_reads_and_hashes_its_csv_once_and_renders_reports_from_memory(
    penguins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "p.csv"
    shutil.copy(penguins, csv)
    parsed: list[str] = []
    for module in (data, persistence):
        real = module.read_table_hashed

        def counted(p: Any, real: Any = real, **kw: Any) -> Any:
            parsed.append(Path(p).name)
            return real(p, **kw)

        monkeypatch.setattr(module, "read_table_hashed", counted)
    monkeypatch.setattr(data, "sha256_file", lambda p: pytest.fail(f"a second pass to hash {p}"))

    with opened_files() as opened:
        summary = run_task(csv, "species", run_id="o", context=RunContext(runs_dir=str(tmp_path / "runs"), max_iters=2))

    assert summary["status"] == "delivered"
    assert parsed == ["p.csv"]  # read, validated and hashed once, at the start
    assert summary["task"]["csv_path"] == str(csv)
    read_back = [(name, mode) for name, mode in opened if "r" in mode and "+" not in mode]
    assert not {"summary.json", "experiments.jsonl", "rewards.jsonl"} & {name for name, _ in read_back}, read_back


def test_a_resumed_run_refuses_a_csv_that_changed_since_it_started(penguins: Path, tmp_path: Path) -> None:
    csv, runs = tmp_path / "p.csv", tmp_path / "runs"
    shutil.copy(penguins, csv)
    killed_run(csv, runs, "h", tmp_path)
    with csv.open("a") as fh:
        fh.write(csv.read_text().splitlines()[1] + "\n")  # one row more
    code, out, err = tandem("resume", "h", "--runs-dir", str(runs), tmp=tmp_path)
    assert code == 2, out + err
    assert err.splitlines() == [
        f"tandem: {csv} has changed since the run started (its SHA-256 differs); "
        "put the original file back to continue this run, or start a new run"
    ]


KILL_AFTER_SECOND_LEDGER_WRITE = """
import os, signal, sys
from langgraph.checkpoint.sqlite import SqliteSaver
from tandem.cli import main

real, seen = SqliteSaver.put_writes, []

def put_writes(self, config, writes, task_id, task_path=""):
    real(self, config, writes, task_id, task_path)
    seen.extend(channel for channel, _ in writes if channel == "ledger")
    if len(seen) == 2:  # a reward node's writes are saved, the checkpoint after it is not
        os.kill(os.getpid(), signal.SIGKILL)

SqliteSaver.put_writes = put_writes
sys.exit(main(sys.argv[1:]))
"""


def test_a_reopened_run_killed_between_a_steps_writes_and_its_checkpoint_resumes_from_there(
    penguins: Path, tmp_path: Path
) -> None:
    """LangGraph leaves a task whose writes were saved out of `next`, so the head looks finished;
    resume must apply those writes and go on, not reopen the run from its old delivery."""
    context = RunContext(runs_dir=str(tmp_path), max_iters=1, n_jobs=1)
    for run_id in ("ref", "k"):
        run_task(penguins, "species", run_id=run_id, context=context)
    resume_run("ref", runs_dir=tmp_path, max_iters=3, force=True)

    argv = ["resume", "k", "--runs-dir", str(tmp_path), "--max-iters", "3", "--force", "--plain"]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_SECOND_LEDGER_WRITE, *argv], cwd=ROOT, timeout=600)
    assert killed.returncode == -signal.SIGKILL

    summary = resume_run("k", runs_dir=tmp_path)  # no --force needed: the run is not at its end
    assert summary["status"] == "delivered" and summary["iterations"] == 3
    assert_decided_like(tmp_path / "k", decisions(tmp_path / "ref"))


# ---------------------------------------------------------------------------------------------
# The profile: stored once in the folder, referenced by every checkpoint
# ---------------------------------------------------------------------------------------------


def wide_csv(path: Path, columns: int = 300, rows: int = 150) -> Path:
    """A wide table: `columns` numeric features (a few of them carry the signal) and a binary label."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, columns)), columns=[f"feature_{i:03d}" for i in range(columns)])
    signal = frame.iloc[:, :5].sum(axis=1) + rng.normal(scale=0.5, size=rows)
    frame["label"] = np.where(signal > 0, "yes", "no")
    frame.to_csv(path, index=False)
    return path


def test_on_wide_data_each_checkpoint_holds_a_reference_to_the_profile_not_the_profile(tmp_path: Path) -> None:
    """Before, every checkpoint after setup carried the whole profile (about 0.45 KB a column as
    JSON, 0.23 KB as msgpack); now the profile is one file, and the checkpoints hold its name and
    hash: none of them holds any of it, and none is as large as it, however wide the data."""
    csv = wide_csv(tmp_path / "wide.csv")
    # no delivery blend (small_data_rows=0): a blend's row repeats its members' specs, each as wide as
    # the data, which is what a spec is, not the profile this test is about
    context = RunContext(runs_dir=str(tmp_path / "runs"), max_iters=1, n_jobs=1, small_data_rows=0)
    summary = run_task(csv, "label", folds=3, run_id="w", context=context)
    assert summary["status"] == "delivered"
    folder = tmp_path / "runs" / "w"
    profile_bytes = (folder / "profile.json").read_bytes()
    profile = json.loads(profile_bytes)
    assert len(profile["columns"]) == 300 and len(profile_bytes) > 100_000
    inline = len(ormsgpack.packb(profile))  # what each checkpoint carried when the state held the profile

    conn = sqlite3.connect(folder / "checkpoints.sqlite")
    try:
        checkpoints = [blob for (blob,) in conn.execute("SELECT checkpoint FROM checkpoints")]
        writes = conn.execute("SELECT channel, value FROM writes").fetchall()
    finally:
        conn.close()
    assert len(checkpoints) >= 6
    blobs = checkpoints + [value for _, value in writes]
    assert not [blob for blob in blobs if b"unique_ratio" in blob]  # a key only the profile's columns have
    assert max(map(len, checkpoints)) < inline / 2, (max(map(len, checkpoints)), inline)
    assert [len(value) < 200 for channel, value in writes if channel == "profile"] == [True]  # a name and a hash

    with open_run(RunFolder(folder)) as graph:
        state = graph.get_state(run_config("w", RunContext())).values
    assert state["profile"] == {"file": "profile.json", "sha256": hashlib.sha256(profile_bytes).hexdigest()}
    assert profile_of(state, RunFolder(folder)).n_columns == 300
