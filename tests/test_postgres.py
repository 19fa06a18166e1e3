"""Checkpoints in a real PostgreSQL server: killed, resumed, forked by another process, never a password on disk.

The server is PostgreSQL 15 made for this module in a temporary folder (tests/postgres_server.py);
a machine without it fails here with the command that installs it. The runs are small (penguins,
3 folds, 4 experiments, one job, so the N-th fold fit is the same one every time) and are compared
with an uninterrupted run that kept its checkpoints in SQLite: where the checkpoints live must not
change a single decision.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from crash import ROOT, assert_same_run, kill_when_paused, outcome, reference_outcome, spawn
from postgres_server import PASSWORD, PostgresServer, free_port

from tandem.api import resume_run, run_history, run_task
from tandem.graph.context import RunContext
from tandem.graph.persistence import run_folder
from tandem.graph.postgres_checkpoints import CHECKPOINT_DB_ENV, CheckpointDatabaseError, claim_thread, public_location
from tandem.tools.data import InputError

ITERS, FOLDS = 4, 3


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, penguins: Path) -> dict[str, Any]:
    """The uninterrupted run, with its checkpoints in SQLite (the default)."""
    return reference_outcome(penguins, "species", tmp_path_factory.mktemp("reference"), ITERS, FOLDS)


@pytest.fixture
def no_password_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGPASSWORD", "PGPASSFILE", CHECKPOINT_DB_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.pgpass of whoever runs the tests


def threads(postgres: PostgresServer) -> dict[str, int]:
    """Checkpoints per thread in the server, read directly."""
    with psycopg.connect(postgres.url()) as conn:
        rows = conn.execute("SELECT thread_id, count(*) FROM checkpoints GROUP BY thread_id").fetchall()
    return {str(t): int(n) for t, n in rows}


def postgres_run(postgres: PostgresServer, csv: Path, runs: Path, run_id: str) -> None:
    """A small delivered run (one experiment) in `runs`, its checkpoints in the test's server."""
    context = RunContext(runs_dir=str(runs), max_iters=1, n_jobs=1)
    run_task(csv, "species", folds=FOLDS, run_id=run_id, context=context, checkpoint_db=postgres.url())


def tandem(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`tandem ARGV` in a separate process (another machine, as far as the run folder can tell)."""
    return subprocess.run(
        [sys.executable, "-m", "tandem.cli", *argv],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_killed_run_resumes_from_postgres_to_the_uninterrupted_run_and_another_process_forks_it(
    postgres: PostgresServer,
    reference: dict[str, Any],
    penguins: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_password_in_env: None,
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    argv = ["run", str(penguins), "--target", "species", "--max-iters", str(ITERS), "--folds", str(FOLDS)]
    argv += ["--n-jobs", "1", "--runs-dir", str(runs), "--run-id", "k", "--checkpoint-db", postgres.url()]
    marker, log = tmp_path / "k.paused.json", tmp_path / "k.log"
    process = spawn(argv, log, "fold_fit@22", marker)  # inside experiment #2's cross-validation
    kill_when_paused(process, marker, log, "fold_fit@22")

    # The folder says where its checkpoints are, without the password, and has no SQLite file.
    recorded = json.loads((runs / "k" / "run.json").read_text())["checkpoint_db"]
    assert recorded == postgres.url(password=False) and PASSWORD not in (runs / "k" / "run.json").read_text()
    assert not (runs / "k" / "checkpoints.sqlite").exists()
    assert threads(postgres)["k"] > 0

    # Without a password anywhere the resume says so in one line; with $PGPASSWORD (libpq's own) it resumes.
    with pytest.raises(InputError, match=r"cannot open the checkpoint database .*no password supplied"):
        resume_run("k", runs_dir=runs)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    summary = resume_run("k", runs_dir=runs)
    assert summary["status"] == "delivered"
    assert_same_run(runs / "k", reference)

    # A second process reads the history and forks the run from the database alone.
    history = tandem(["history", "k", "--runs-dir", str(runs), "--json"], {"PGPASSWORD": PASSWORD})
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    assert [r["step"] for r in rows] == [r["step"] for r in run_history("k", runs)]
    step = next(r["step"] for r in rows if r["next"] == ["scientist"] and r["experiments"] == 3)
    forked = tandem(
        ["fork", "k", "--from", str(step), "--run-id", "f", "--runs-dir", str(runs), "--plain"],
        {CHECKPOINT_DB_ENV: postgres.url()},  # here the password comes from the environment's connection string
    )
    assert forked.returncode == 0, forked.stdout + forked.stderr
    fork = json.loads((runs / "f" / "run.json").read_text())
    assert fork["checkpoint_db"] == recorded and fork["forked_from"]["run_id"] == "k"
    assert not (runs / "f" / "checkpoints.sqlite").exists() and threads(postgres)["f"] > 0
    # The fork replays the original's choices from there: the same ledger as the run it came from.
    assert outcome(runs / "f")["ledger"] == outcome(runs / "k")["ledger"]


def test_a_copied_folder_resumes_on_a_thread_of_its_own(
    postgres: PostgresServer, penguins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    postgres_run(postgres, penguins, runs, "orig")
    before = threads(postgres)["orig"]
    shutil.copytree(runs / "orig", runs / "copy")
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    resume_run("copy", runs_dir=runs, force=True, max_iters=2)
    after = threads(postgres)
    assert after["orig"] == before  # the original's history was not written to
    assert after["copy"] > before
    assert json.loads((runs / "copy" / "run.json").read_text())["copied_from"] == "orig"


def test_a_new_run_on_a_thread_the_database_already_has_is_refused_in_one_line(
    postgres: PostgresServer, penguins: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    common = ["run", str(penguins), "--target", "species", "--max-iters", "1", "--folds", str(FOLDS), "--plain"]
    common += ["--n-jobs", "1", "--run-id", "same", "--checkpoint-db", postgres.url()]
    assert tandem([*common, "--runs-dir", str(first)], {}).returncode == 0
    done = tandem([*common, "--runs-dir", str(second)], {})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"tandem: run id 'same' already has checkpoints in {postgres.url(password=False)} (another run folder "
        "uses it); pick another --run-id"
    ]
    assert not (second / "same" / "run.json").exists()


def test_bad_connection_strings_and_unreachable_servers_are_one_line(penguins: Path, tmp_path: Path) -> None:
    base = ["run", str(penguins), "--target", "species", "--runs-dir", str(tmp_path), "--plain"]
    wrong = tandem([*base, "--checkpoint-db", "mysql://u:pw@host/db"], {})
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
    assert "postgresql://USER@HOST:5432/DATABASE" in wrong.stderr and ":pw@" not in wrong.stderr
    down = tandem([*base, "--checkpoint-db", f"postgresql://u:topsecret@127.0.0.1:{free_port()}/db"], {})  # no server
    assert down.returncode == 2, down.stderr
    assert len(down.stderr.strip().splitlines()) == 1 and "cannot open the checkpoint database" in down.stderr
    assert "topsecret" not in down.stderr
    assert not any(tmp_path.iterdir())  # no run folder left behind


def test_the_recorded_form_has_no_password() -> None:
    assert public_location("postgresql://me:p%40ss@db.example:5433/runs?sslmode=require&password=x") == (
        "postgresql://me@db.example:5433/runs?sslmode=require"
    )
    assert public_location("postgres://db/runs") == "postgresql://db/runs"
    # libpq decodes %20, not "+": a space in its options must stay %20 in the recorded form
    assert public_location("postgresql://db/runs?options=-c%20statement_timeout%3D1000") == (
        "postgresql://db/runs?options=-c%20statement_timeout%3D1000"
    )


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://me@[::1/runs?password=topsecret",  # a bracketed host left open: was a ValueError traceback
        "postgresql://me@db:notaport/runs?password=topsecret",
        "postgresql://me@db?password=topsecret",  # no database
    ],
)
def test_a_malformed_connection_string_is_refused_without_showing_its_password(given: str) -> None:
    with pytest.raises(CheckpointDatabaseError) as refused:
        public_location(given)
    assert "topsecret" not in str(refused.value) and "***" in str(refused.value)


def test_a_command_repeated_in_a_message_leaves_the_password_out(
    postgres: PostgresServer, penguins: Path, tmp_path: Path
) -> None:
    """The runs folder is a file, so the run fails before its folder exists and the message repeats
    the command as typed: the password it was typed with must not be printed back."""
    (tmp_path / "afile").write_text("not a folder")
    argv = ["run", str(penguins), "--target", "species", "--runs-dir", str(tmp_path / "afile"), "--run-id", "echo"]
    failed = tandem([*argv, "--checkpoint-db", postgres.url()], {})
    assert failed.returncode == 3, failed.stderr
    assert PASSWORD not in failed.stderr and f"--checkpoint-db {postgres.url(password=False)}" in failed.stderr


def test_a_database_lost_mid_run_is_one_line_and_the_run_resumes_once_it_is_back(
    penguins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = PostgresServer()  # a server of its own: this test stops it
    try:
        runs = tmp_path / "runs"
        argv = ["run", str(penguins), "--target", "species", "--max-iters", "6", "--folds", str(FOLDS), "--plain"]
        argv += ["--n-jobs", "1", "--runs-dir", str(runs), "--run-id", "d", "--checkpoint-db", server.url()]
        log = tmp_path / "d.log"
        process = spawn(argv, log)
        try:
            deadline = time.monotonic() + 600
            while not (runs / "d" / "experiments.jsonl").exists():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the run never wrote its ledger"
                time.sleep(0.05)
            server.halt()
            assert process.wait(timeout=600) == 3
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        lines = [line for line in log.read_text().splitlines() if line.startswith("tandem: ")]
        assert len(lines) == 1 and lines[0].startswith("tandem: the checkpoint database failed (")
        assert lines[0].endswith(f"continue with `tandem resume d --runs-dir {runs}` once it is back")
        assert PASSWORD not in lines[0]
        assert "Traceback" not in log.read_text()
        server.start()
        monkeypatch.setenv("PGPASSWORD", PASSWORD)
        assert resume_run("d", runs_dir=runs)["status"] == "delivered"
    finally:
        server.stop()


def test_a_resume_given_a_database_without_the_run_leaves_run_json_as_it_was(
    postgres: PostgresServer, penguins: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    postgres_run(postgres, penguins, runs, "moved")
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE elsewhere")  # reachable, but the run's thread is not there
    recorded = (runs / "moved" / "run.json").read_bytes()
    wrong = {
        postgres.url(database="elsewhere"): "does not hold its checkpoints (no thread 'moved')",
        f"postgresql://tandem:pw@127.0.0.1:{free_port()}/db": "cannot open the checkpoint database",  # no server
    }
    for url, reason in wrong.items():
        done = tandem(["resume", "moved", "--runs-dir", str(runs), "--force", "--plain", "--checkpoint-db", url], {})
        assert done.returncode == 2, done.stdout + done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and reason in done.stderr, done.stderr
        assert (runs / "moved" / "run.json").read_bytes() == recorded  # still where its checkpoints are
    with psycopg.connect(postgres.url(database="elsewhere")) as conn:  # only looked at: no tables made there
        assert conn.execute("SELECT to_regclass('checkpoints')").fetchone() == (None,)
    # The right database (here with the password it brings) is accepted and the run is as it was.
    same = tandem(["history", "moved", "--runs-dir", str(runs), "--json"], {"PGPASSWORD": PASSWORD})
    assert same.returncode == 0, same.stderr


def test_two_claims_of_one_run_id_from_two_folders_let_only_the_first_through(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    location = public_location(postgres.url())  # the password, remembered for this process
    claim_thread(location, "twin", run_folder(tmp_path / "a", "twin"))  # no checkpoint written yet
    claim_thread(location, "twin", run_folder(tmp_path / "a", "twin"))  # the same folder again: a retry after a kill
    with pytest.raises(InputError, match=r"run id 'twin' already has checkpoints in .*; pick another --run-id"):
        claim_thread(location, "twin", run_folder(tmp_path / "b", "twin"))  # another connection, another folder
    # Two processes at the same moment: exactly one wins.
    script = (
        "import sys; from pathlib import Path; from tandem.graph.persistence import run_folder;"
        "from tandem.graph.postgres_checkpoints import claim_thread, public_location as p\n"
        "try: claim_thread(p(sys.argv[1]), 'race', run_folder(Path(sys.argv[2]), 'race'))\n"
        "except Exception as e: print(e); sys.exit(2)"
    )
    racers = [
        subprocess.Popen([sys.executable, "-c", script, postgres.url(), str(tmp_path / name)], cwd=ROOT)
        for name in ("x", "y")
    ]
    assert sorted(r.wait(timeout=120) for r in racers) == [0, 2]


def test_two_copies_of_one_run_given_the_same_name_do_not_share_a_thread(
    postgres: PostgresServer, penguins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres_run(postgres, penguins, tmp_path / "runs", "one")
    for runs in ("runsI", "runsJ"):
        shutil.copytree(tmp_path / "runs" / "one", tmp_path / runs / "cp")
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    resume_run("cp", runs_dir=tmp_path / "runsI", force=True)
    before, recorded = threads(postgres), (tmp_path / "runsJ" / "cp" / "run.json").read_bytes()
    with pytest.raises(InputError) as refused:
        resume_run("cp", runs_dir=tmp_path / "runsJ", force=True)
    assert str(refused.value) == (
        f"run id 'cp' already has checkpoints in {postgres.url(password=False)} (another run folder uses it); "
        "pick another name for the copy"
    )
    assert threads(postgres) == before  # the first copy's thread was not written to
    assert (tmp_path / "runsJ" / "cp" / "run.json").read_bytes() == recorded  # still a copy of 'one', not adopted


def test_a_run_whose_thread_is_gone_from_the_database_names_the_database_not_a_sqlite_file(
    postgres: PostgresServer, penguins: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    postgres_run(postgres, penguins, runs, "gone")
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            conn.execute(f"DELETE FROM {table} WHERE thread_id = 'gone'")
    done = tandem(["history", "gone", "--runs-dir", str(runs)], {"PGPASSWORD": PASSWORD})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"tandem: run gone: its checkpoint thread 'gone' is not in {postgres.url(password=False)} although the run "
        "had started, so its checkpoints are lost or in another database: if the database moved, give it with "
        "--checkpoint-db; otherwise start a new run, or pass --force to tandem resume to start this one again in place"
    ]
