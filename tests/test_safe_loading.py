"""Opening a run folder is safe by default: planted code is refused, damage is named, a full disk is survived.

A run folder may come from someone else (a colleague, an archive), so each test plants what a
hostile or damaged folder could hold and drives `tandem` as a user does (`cli.main` in process),
checking for one line on stderr, a non-zero exit and that nothing planted ran.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import ormsgpack
import pytest
from langgraph.checkpoint.serde.jsonplus import EXT_CONSTRUCTOR_POS_ARGS, JsonPlusSerializer

from tandem.api import run_history, run_task
from tandem.cli import main
from tandem.graph.context import RunContext


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory, penguins: Path) -> Path:
    """A small delivered run, copied by each test that damages it."""
    runs = tmp_path_factory.mktemp("delivered")
    run_task(penguins, "species", run_id="d", context=RunContext(runs_dir=str(runs), max_iters=1, n_jobs=1))
    return runs / "d"


@pytest.fixture
def run(delivered: Path, tmp_path: Path) -> Path:
    """A copy of the delivered run under `tmp_path/runs`, under the same name."""
    folder = tmp_path / "runs" / "d"
    shutil.copytree(delivered, folder)
    return folder


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


# ---------------------------------------------------------------------------------------------
# Checkpoints: a planted object is refused, not built
# ---------------------------------------------------------------------------------------------


def plant(folder: Path, marker: Path) -> bytes:
    """Put into the run's newest checkpoint a msgpack value that, built, runs `touch MARKER`."""
    evil = ormsgpack.Ext(EXT_CONSTRUCTOR_POS_ARGS, ormsgpack.packb(("os", "system", (f"touch {marker}",))))
    conn = sqlite3.connect(folder / "checkpoints.sqlite")
    with conn:
        rowid, blob = conn.execute("SELECT rowid, checkpoint FROM checkpoints ORDER BY rowid DESC LIMIT 1").fetchone()
        checkpoint = ormsgpack.unpackb(blob, ext_hook=ormsgpack.Ext, option=ormsgpack.OPT_NON_STR_KEYS)
        checkpoint["channel_values"]["status"] = evil
        planted = ormsgpack.packb(checkpoint)
        conn.execute("UPDATE checkpoints SET checkpoint = ? WHERE rowid = ?", (planted, rowid))
    conn.close()
    return planted


def test_the_planted_payload_is_real_langgraph_s_default_serializer_runs_it(run: Path, tmp_path: Path) -> None:
    """The control: without tandem's serializer the planted value runs its command on load."""
    marker = tmp_path / "ran-by-default"
    planted = plant(run, marker)
    JsonPlusSerializer(allowed_msgpack_modules=True).loads_typed(("msgpack", planted))
    assert marker.exists()


# `tandem resume d` alone on a finished run reads only summary.json (it says how to continue): a
# raised budget is what makes it open the checkpoints.
@pytest.mark.parametrize(
    "command",
    [
        ["history", "d"],
        ["resume", "d", "--max-iters", "2"],
        ["resume", "d", "--force", "--max-iters", "2"],
        ["fork", "d", "--from", "3"],
    ],
)
def test_a_planted_object_in_the_checkpoints_is_refused_in_one_line_and_never_runs(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    marker = tmp_path / "pwned"
    plant(run, marker)
    assert main([*command, "--runs-dir", str(run.parent)]) == 2
    line = one_line_error(capsys)
    assert "os.system" in line and "never writes" in line and "trust" in line
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# The model: only from inside the folder, only with the hash recorded at delivery
# ---------------------------------------------------------------------------------------------


def test_delivery_records_the_model_s_hash_and_predict_checks_it(
    run: Path, penguins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["model_sha256"]) == 64
    out = tmp_path / "p.csv"
    assert main(["predict", "d", str(penguins), "-o", str(out), "--runs-dir", str(run.parent)]) == 0
    capsys.readouterr()

    model = joblib.load(run / "model.joblib")
    joblib.dump(model, run / "model.joblib", compress=3)  # the same model, other bytes
    out.unlink()
    assert main(["predict", "d", str(penguins), "-o", str(out), "--runs-dir", str(run.parent)]) == 2
    line = one_line_error(capsys)
    assert "model.joblib" in line and "SHA-256" in line and "refused" in line
    assert not out.exists()

    # `resume --force` with no budget raised delivers again (it used to print where the run stood
    # and change nothing, though messages and docs advise it for a damaged or unhashed model)
    (run / "model.joblib").write_bytes(b"damaged")
    ledger = (run / "experiments.jsonl").read_bytes()
    assert main(["resume", "d", "--force", "--plain", "--runs-dir", str(run.parent)]) == 0
    assert "is finished" not in capsys.readouterr().out
    assert main(["predict", "d", str(penguins), "-o", str(out), "--runs-dir", str(run.parent)]) == 0
    assert (run / "experiments.jsonl").read_bytes() == ledger  # the same search, delivered again
    assert (
        json.loads((run / "summary.json").read_text())["model_sha256"]
        == hashlib.sha256((run / "model.joblib").read_bytes()).hexdigest()
    )


@pytest.mark.parametrize("name", ["ABS", "../elsewhere/model.joblib", "link.joblib"])
def test_a_summary_naming_a_model_outside_the_folder_is_refused(
    run: Path, penguins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    elsewhere = tmp_path / "runs" / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(run / "model.joblib", elsewhere / "model.joblib")  # same bytes: the hash alone would pass
    (run / "link.joblib").symlink_to(elsewhere / "model.joblib")
    name = str(elsewhere / "model.joblib") if name == "ABS" else name
    summary = json.loads((run / "summary.json").read_text())
    summary["artifacts"]["model"] = name
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["predict", "d", str(penguins), "--runs-dir", str(run.parent)]) == 2
    line = one_line_error(capsys)
    assert "not inside the run folder" in line and "refused" in line


# ---------------------------------------------------------------------------------------------
# Damage found, not hidden
# ---------------------------------------------------------------------------------------------


def test_an_emptied_checkpoint_database_never_restarts_a_run_silently(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run / "summary.json").unlink()  # an undelivered run: nothing else would stop a restart
    for name in ("checkpoints.sqlite", "checkpoints.sqlite-wal", "checkpoints.sqlite-shm"):
        if (run / name).exists():
            (run / name).write_bytes(b"")
    ledger = (run / "experiments.jsonl").read_bytes()
    for command in (["resume", "d"], ["history", "d"], ["fork", "d", "--from", "3"]):
        assert main([*command, "--runs-dir", str(run.parent)]) == 2
        line = one_line_error(capsys)
        assert "checkpoints.sqlite is empty" in line and "start a new run" in line
    assert (run / "experiments.jsonl").read_bytes() == ledger
    assert not (run / "summary.json").exists()


def test_a_deleted_checkpoint_database_is_named_missing_by_every_command_and_not_recreated(
    run: Path, capsys: pytest.CaptureFixture[str], penguins: Path
) -> None:
    """Opening SQLite creates a missing file: a command that only reads would then have called the
    loss "empty" (or, for `predict --experiment`, "no trained experiment yet") and left an empty
    database behind, which a later `resume` could take for a run never started."""
    (run / "summary.json").unlink()  # an undelivered run, so `resume` reaches its checkpoints
    for name in ("checkpoints.sqlite", "checkpoints.sqlite-wal", "checkpoints.sqlite-shm"):
        (run / name).unlink(missing_ok=True)
    commands = (
        ["resume", "d"],
        ["history", "d"],
        ["repair", "d"],
        ["fork", "d", "--from", "3"],
        ["predict", "d", str(penguins), "--experiment", "0"],
    )
    for command in commands:
        assert main([*command, "--runs-dir", str(run.parent)]) == 2, command
        line = one_line_error(capsys)
        assert "checkpoints.sqlite is missing" in line and "restore it from a copy" in line, line
        assert not (run / "checkpoints.sqlite").exists(), command


def test_a_half_truncated_checkpoint_database_is_named_in_one_line(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = run / "checkpoints.sqlite"
    data = database.read_bytes()
    database.write_bytes(data[: len(data) // 2])
    for name in ("checkpoints.sqlite-wal", "checkpoints.sqlite-shm"):
        (run / name).unlink(missing_ok=True)
    for command in (["resume", "d", "--force"], ["history", "d"], ["fork", "d", "--from", "3"], ["repair", "d"]):
        assert main([*command, "--runs-dir", str(run.parent)]) == 2
        line = one_line_error(capsys)
        assert "checkpoints.sqlite is damaged" in line and "tandem repair d --salvage" in line
    assert len(database.read_bytes()) == len(data) // 2  # not "repaired" by being rewritten


# ---------------------------------------------------------------------------------------------
# Links out of the folder, and files of the wrong shape
# ---------------------------------------------------------------------------------------------


def test_links_out_of_a_run_folder_are_refused_and_what_they_point_at_is_left_alone(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lock is truncated by whoever takes it and SQLite creates what its path names: through
    a link planted in the folder, either would write a file of the user's anywhere."""
    victim = tmp_path / "notes.txt"
    victim.write_text("a file of the user's\n")
    (run / "run.lock").unlink(missing_ok=True)
    (run / "run.lock").symlink_to(victim)
    for command in (["repair", "d"], ["resume", "d", "--force"], ["repair", "d", "--salvage"]):
        assert main([*command, "--runs-dir", str(run.parent)]) == 2
        assert "run.lock" in one_line_error(capsys)
    assert victim.read_text() == "a file of the user's\n"

    (run / "run.lock").unlink()
    elsewhere = tmp_path / "created.sqlite"
    (run / "checkpoints.sqlite").rename(tmp_path / "moved.sqlite")
    (run / "checkpoints.sqlite").symlink_to(elsewhere)
    assert main(["history", "d", "--runs-dir", str(run.parent)]) == 2
    assert "checkpoints.sqlite is a link" in one_line_error(capsys)
    assert not elsewhere.exists()


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # NaN as the bare word NaN, which Python's json reads back


SUMMARIES = {
    "empty": (lambda s: s.clear(), "status is missing"),
    "seconds as NaN": (lambda s: s.update(seconds_spent=float("nan")), "seconds_spent is not a finite number"),
    "seconds as text": (lambda s: s.update(seconds_spent="7.8"), "seconds_spent is not a finite number"),
    "best as a list": (lambda s: s.update(best=[]), "best is not an object"),
    "metric as a list": (lambda s: s["task"].update(primary_metric=["f1"]), "task.primary_metric is not text"),
    "iterations as text": (lambda s: s.update(iterations="x"), "iterations is not a whole number"),
    "rewards as text": (lambda s: s.update(rewards={"scientist": "a lot"}), "rewards holds a value"),
    "seconds past any float": (lambda s: s.update(seconds_spent=10**400), "seconds_spent is not a finite number"),
    "iterations past any float": (lambda s: s.update(iterations=10**400), "iterations is out of range"),
    "csv path as a number": (lambda s: s["task"].update(csv_path=5), "task.csv_path is not text"),
}


@pytest.mark.parametrize("case", SUMMARIES)
def test_a_summary_of_the_wrong_shape_is_named_in_one_line_and_the_run_is_still_listed(
    run: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    change, said = SUMMARIES[case]
    _edit(run / "summary.json", change)
    assert main(["show", "d", "--runs-dir", str(run.parent)]) == 2
    line = one_line_error(capsys)
    assert f"summary.json is damaged ({said}" in line and "tandem repair d" in line
    assert main(["runs", "--runs-dir", str(run.parent)]) == 0
    assert re.search(r"^\S+ \S+\s+d\s+(delivered|damaged)\s", capsys.readouterr().out, re.MULTILINE)
    assert main(["leaderboard", "d", "--runs-dir", str(run.parent)]) == 0
    assert "#0" in capsys.readouterr().out


RUN_JSONS = {
    "garbled": lambda path: path.write_text('{"run_id": "d", "requ'),
    "a list": lambda path: path.write_text("[]"),
    "request as text": lambda path: _edit(path, lambda d: d.update(request="oops")),
    "no context": lambda path: _edit(path, lambda d: d.pop("context")),
    "approve unknown": lambda path: _edit(path, lambda d: d["context"].update(approve="sometimes")),
    "max_iters as a word": lambda path: _edit(path, lambda d: d["context"].update(max_iters="many")),
}


@pytest.mark.parametrize("case", RUN_JSONS)
def test_a_run_json_of_the_wrong_shape_is_named_in_one_line_by_every_command_that_opens_the_run(
    run: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    RUN_JSONS[case](run / "run.json")
    checkpoints = (run / "checkpoints.sqlite").read_bytes()
    for command in (["history", "d"], ["resume", "d", "--max-iters", "5", "--force"], ["repair", "d"]):
        assert main([*command, "--runs-dir", str(run.parent)]) == 2
        line = one_line_error(capsys)
        assert "run d: run.json is damaged" in line, line
    assert main(["runs", "--runs-dir", str(run.parent)]) == 0
    assert re.search(r"\sd\s+(delivered|damaged)\s", capsys.readouterr().out)
    assert (run / "checkpoints.sqlite").read_bytes() == checkpoints


def test_numbers_past_any_float_never_break_a_command_that_only_reads_nor_the_listing_of_other_runs(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON has no limit on a whole number, and `float(10**400)` raises OverflowError: a hand-edited
    budget, count or time in one run folder is shown as missing, not a traceback for every run."""
    stopped = run.parent / "s"
    shutil.copytree(run, stopped)
    (stopped / "summary.json").unlink()  # listed from its ledger, fit times summed
    ledger = [json.loads(line) for line in (stopped / "experiments.jsonl").read_text().splitlines()]
    ledger[0]["fit_seconds"] = 10**400
    (stopped / "experiments.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ledger))
    _edit(run / "run.json", lambda d: d["context"].update(max_iters=10**400))
    _edit(run / "summary.json", lambda d: d.update(iterations=10**400, seconds_spent=10**400))
    assert main(["resume", "d", "--runs-dir", str(run.parent)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run d is finished: ") and "--max-iters 5 --force" in out
    assert main(["runs", "--runs-dir", str(run.parent)]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"\sd\s+delivered\s", listed) and re.search(r"\ss\s+stopped\s", listed)
    assert main(["leaderboard", "s", "--runs-dir", str(run.parent)]) == 0
    assert "#0" in capsys.readouterr().out


def test_a_ledger_of_the_wrong_shape_still_gives_a_leaderboard(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = run / "experiments.jsonl"
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    rows[0].update(spec={"model": "lgbm", "features": 3}, fit_seconds="1.2s", fold_scores=[0.5], cv_std="x")
    rows.append({"id": "seven", "status": "ok"})
    ledger.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["leaderboard", "d", "--runs-dir", str(run.parent)]) == 0
    assert "#0" in capsys.readouterr().out
    assert main(["runs", "--runs-dir", str(run.parent)]) == 0


def test_a_copied_run_is_shown_under_its_own_name_and_a_bad_database_port_is_one_line(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(run, run.parent / "e")
    assert main(["show", "e", "--runs-dir", str(run.parent)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run e: ") and "next: tandem predict e new.csv" in out
    database = "postgresql://tandem@localhost:99999/runs"
    assert main(["history", "d", "--runs-dir", str(run.parent), "--checkpoint-db", database]) == 2
    assert "is not a number from 1 to 65535" in one_line_error(capsys)


def test_a_damaged_model_record_means_refit_not_a_crash(
    run: Path, penguins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["predict", "d", str(penguins), "--experiment", "0", "--runs-dir", str(run.parent)]
    assert main([*args, "-o", str(tmp_path / "first.csv")]) == 0
    record = run / "models" / "experiment-0.json"
    record.write_text('{"experiment_id": 0, "spec')
    assert main([*args, "-o", str(tmp_path / "second.csv")]) == 0
    assert (tmp_path / "first.csv").read_bytes() == (tmp_path / "second.csv").read_bytes()
    assert json.loads(record.read_text())["experiment_id"] == 0  # written again, whole


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def ledger_of(folder: Path) -> list[tuple[int, str | None, float | None]]:
    """What a run decided and scored, experiment by experiment (times differ from run to run)."""
    rows = [json.loads(line) for line in (folder / "experiments.jsonl").read_text().splitlines()]
    return [(row["id"], row["spec_hash"], row["primary"]) for row in rows]


def test_salvage_copies_what_a_half_truncated_database_still_holds_into_a_new_run_that_resumes_to_the_same_ledger(
    run: Path, delivered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = run / "checkpoints.sqlite"
    data = database.read_bytes()
    database.write_bytes(data[: len(data) // 2])
    for name in ("checkpoints.sqlite-wal", "checkpoints.sqlite-shm"):
        (run / name).unlink(missing_ok=True)
    before = files_of(run)
    runs = str(run.parent)

    assert main(["repair", "d", "--salvage", "--runs-dir", runs]) == 0
    said = capsys.readouterr().out
    assert "salvaged run d into run d-salvaged" in said and "tandem resume d-salvaged" in said
    assert files_of(run) == before  # the damaged run is only read
    salvaged = run.parent / "d-salvaged"
    step = json.loads((salvaged / "run.json").read_text())["salvaged_from"]["step"]
    assert f"at step {step}" in said

    conn = sqlite3.connect(salvaged / "checkpoints.sqlite")
    try:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        kept = conn.execute("SELECT DISTINCT thread_id FROM checkpoints").fetchall()
    finally:
        conn.close()
    assert kept == [("d-salvaged",)]  # the new run's own thread: resuming it never writes to d
    assert main(["history", "d-salvaged", "--runs-dir", runs]) == 0
    capsys.readouterr()
    assert run_history("d-salvaged", runs)[-1]["step"] == step < run_history("d", delivered.parent)[-1]["step"]

    assert main(["resume", "d-salvaged", "--runs-dir", runs, "--plain"]) == 0
    assert ledger_of(salvaged) == ledger_of(run)  # the same run as the one that was not damaged
    assert json.loads((salvaged / "summary.json").read_text())["status"] == "delivered"
    assert files_of(run) == before

    assert main(["repair", "d", "--salvage", "--runs-dir", runs]) == 2
    assert "d-salvaged already exists; pick another --to" in one_line_error(capsys)


def test_salvage_skips_rows_whose_bytes_are_garbled_and_keeps_the_rest(
    run: Path, penguins: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pages overwritten in the middle (not cut off at the end): the rows on them are read as
    garbage, which is damage to skip, not a planted type to refuse; the newest checkpoint, past
    them, is the delivered end, so the salvaged run is delivered and its model predicts."""
    database = run / "checkpoints.sqlite"
    data = bytearray(database.read_bytes())
    data[7 * 4096 : 9 * 4096] = b"\xff" * (2 * 4096)  # pages 8 and 9
    database.write_bytes(bytes(data))
    for name in ("checkpoints.sqlite-wal", "checkpoints.sqlite-shm"):
        (run / name).unlink(missing_ok=True)
    runs = str(run.parent)
    assert main(["history", "d", "--runs-dir", runs]) == 2
    assert "tandem repair d --salvage" in one_line_error(capsys)

    assert main(["repair", "d", "--salvage", "--runs-dir", runs]) == 0
    said = capsys.readouterr().out
    assert "could not be read" in said and "delivered as well" in said
    salvaged = run.parent / "d-salvaged"
    assert ledger_of(salvaged) == ledger_of(run)
    assert main(["predict", "d-salvaged", str(penguins), "--runs-dir", runs]) == 0
    assert capsys.readouterr().out.startswith('"prediction"')


def test_salvage_of_a_database_with_nothing_readable_is_one_line_and_leaves_no_folder(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = run / "checkpoints.sqlite"
    database.write_bytes(database.read_bytes()[:4096])  # the schema page only
    for name in ("checkpoints.sqlite-wal", "checkpoints.sqlite-shm"):
        (run / name).unlink(missing_ok=True)
    assert main(["repair", "d", "--salvage", "--to", "rescued", "--runs-dir", str(run.parent)]) == 2
    assert "nothing" in one_line_error(capsys)
    assert sorted(p.name for p in run.parent.iterdir()) == ["d"]


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_a_missing_or_altered_profile_is_named_in_one_line_and_repair_rebuilds_it_from_the_csv(
    run: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = run / "profile.json"
    original = profile.read_bytes()
    if damage == "missing":
        profile.unlink()
    else:
        profile.write_bytes(original.replace(b'"n_rows": 275', b'"n_rows": 276'))
    runs = str(run.parent)
    for command in (["resume", "d", "--force", "--max-iters", "2"], ["fork", "d", "--from", "3"]):
        assert main([*command, "--runs-dir", runs]) == 2
        line = one_line_error(capsys)
        what = "is missing" if damage == "missing" else "does not match the SHA-256 its checkpoints record"
        assert f"profile.json {what}" in line and "tandem repair d" in line
    assert not (run.parent / "d-fork3").exists()

    assert main(["repair", "d", "--runs-dir", runs]) == 0
    assert "profile.json" in capsys.readouterr().out
    assert profile.read_bytes() == original


def same_content(name: str, mine: bytes, theirs: bytes) -> bool:
    """Byte-identical, except the ids (markers, clip paths) matplotlib draws at random in report.html."""
    if name.endswith(".html"):
        mine, theirs = (re.sub(rb"\b[a-z][0-9a-f]{10}\b", b"id", data) for data in (mine, theirs))
    return mine == theirs


def test_a_truncated_ledger_is_found_and_repair_restores_it_byte_identically(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["experiments.jsonl", "rewards.jsonl", "summary.json", "report.md", "report.html"]
    originals = {name: (run / name).read_bytes() for name in names}
    ledger = originals["experiments.jsonl"]
    (run / "experiments.jsonl").write_bytes(ledger[: len(ledger) // 2])
    (run / "rewards.jsonl").unlink()
    (run / "summary.json").write_bytes(originals["summary.json"][:100])

    assert main(["resume", "d", "--runs-dir", str(run.parent)]) == 2
    line = one_line_error(capsys)
    assert "experiments.jsonl" in line and "tandem repair d" in line
    assert main(["history", "d", "--runs-dir", str(run.parent)]) == 2
    assert "tandem repair d" in one_line_error(capsys)
    assert main(["show", "d", "--runs-dir", str(run.parent)]) == 2
    assert "summary.json is damaged" in one_line_error(capsys)

    assert main(["repair", "d", "--runs-dir", str(run.parent)]) == 0
    assert "repaired run d" in capsys.readouterr().out
    for name in names:
        assert same_content(name, (run / name).read_bytes(), originals[name]), name
    assert main(["history", "d", "--runs-dir", str(run.parent)]) == 0


# ---------------------------------------------------------------------------------------------
# Disk full
# ---------------------------------------------------------------------------------------------


@contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root only); skips the test where mounting is not allowed."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` bytes free."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


def assert_intact_after_disk_full(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys)
    assert line.startswith("tandem: disk full while writing ") and "tandem resume d" in line
    assert not [p.name for p in folder.rglob("*.tmp")]  # no partial temporary file left


def assert_checkpoints_intact(folder: Path) -> None:
    conn = sqlite3.connect(folder / "checkpoints.sqlite")
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    conn.close()


@pytest.mark.parametrize("free", [0, 32 * 1024])
def test_a_full_disk_mid_run_is_one_line_exit_3_and_the_run_resumes_after(
    delivered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], free: int
) -> None:
    """A real full disk (a small tmpfs): nothing free, or a little, so the run fails later on."""
    with small_disk(tmp_path / "disk", "8m") as disk:
        folder = disk / "d"
        shutil.copytree(delivered, folder)
        filler = fill(disk, leave=free)
        argv = ["resume", "d", "--force", "--max-iters", "2", "--runs-dir", str(disk)]
        assert main(argv) == 3
        assert_intact_after_disk_full(folder, capsys)
        filler.unlink()
        assert_checkpoints_intact(folder)
        assert main(["history", "d", "--runs-dir", str(disk)]) == 0
        capsys.readouterr()
        assert main(argv) == 0
        assert json.loads((folder / "summary.json").read_text())["iterations"] == 2


def test_an_injected_enospc_in_a_file_write_is_one_line_exit_3(
    run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no tmpfs can be mounted: the same story with ENOSPC raised by the fsync of every atomic file."""
    ledger = (run / "experiments.jsonl").read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    assert main(["resume", "d", "--force", "--max-iters", "2", "--runs-dir", str(run.parent)]) == 3
    assert_intact_after_disk_full(run, capsys)
    assert_checkpoints_intact(run)
    assert (run / "experiments.jsonl").read_bytes() == ledger
    monkeypatch.undo()
    assert main(["history", "d", "--runs-dir", str(run.parent)]) == 0  # resuming after is the tmpfs test's


def test_an_os_error_in_a_read_only_command_suggests_that_command_again_not_resume(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`history` only reads: the hint after an OS error is the command as typed, options and all, so
    pasting it back retries the read, and nothing offers to resume (which would train)."""
    (run / "experiments.jsonl").unlink()
    (run / "experiments.jsonl").mkdir()  # reading it fails with EISDIR, an OS error root cannot bypass
    argv = ["history", "d", "--runs-dir", str(run.parent)]
    assert main(argv) == 3
    line = one_line_error(capsys)
    assert line.endswith(f"run `tandem history d --runs-dir {run.parent}`"), line
    assert "resume" not in line
