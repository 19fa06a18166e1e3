"""The run folder: everything a run keeps on disk, and the SQLite checkpointer that saves every step.

State holds references; the folder holds the substance. `<runs-dir>/<run-id>/` contains
`run.json` (the request and context a resume needs, and the run's own id), `checkpoints.sqlite`,
`split.json`, `cache/` (fold scores and out-of-fold predictions by spec hash) and, at delivery,
the artifacts. Every file name is a `RunFolder` property, and nothing inside a folder names a file
of the folder by an absolute path (the state and `summary.json` name none, or name them relative
to the folder), so a folder can be moved or copied and keeps working where it lands.

One process at a time writes a run: `run_lock` holds an exclusive `flock` on `run.lock` for as
long as it works on the run (the OS drops it if the process dies). Every file is written under a
temporary name of its own, fsynced, then renamed over the old one.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import sqlite3
import stat
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, NamedTuple

import joblib
import numpy as np
import ormsgpack
import pandas as pd
from langgraph.checkpoint.serde._msgpack import SAFE_MSGPACK_METHODS, SAFE_MSGPACK_TYPES
from langgraph.checkpoint.serde.jsonplus import (
    EXT_CONSTRUCTOR_KW_ARGS,
    EXT_CONSTRUCTOR_POS_ARGS,
    EXT_CONSTRUCTOR_SINGLE_ARG,
    EXT_METHOD_SINGLE_ARG,
    EXT_PYDANTIC_V1,
    EXT_PYDANTIC_V2,
    JsonPlusSerializer,
)
from langgraph.checkpoint.sqlite import SqliteSaver

from tandem.graph.context import RunContext
from tandem.graph.state import ProfileRef, TaskInfo
from tandem.tools.data import InputError, LoadedTask, load_task, read_table_hashed
from tandem.tools.pause_points import CommitPause
from tandem.tools.profile import DatasetProfile, profile_dataset
from tandem.tools.training import Problem, Split

CHECKPOINT_DB_KEY = "checkpoint_db"
"""The `run.json` key recording the PostgreSQL database of a run's checkpoints (graph/postgres_checkpoints.py)."""
RUN_ID_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
"""A run id names a folder directly under the runs folder: ASCII letters, digits, `-`, `_` and
`.`, not starting with a dot or `-`, at most 128 characters. No separator, no `..`, nothing a
shell or another file system reads differently, and nothing a command line takes for an option
(`tandem resume -x` would be refused as an unknown option, so a run named so could not be resumed)."""


def check_run_id(run_id: str) -> str:
    """The run id, or an `InputError` saying what a run id may contain."""
    if not isinstance(run_id, str) or not RUN_ID_RULE.fullmatch(run_id):
        raise InputError(
            f"run id {run_id!r} is not allowed: use letters, digits, '-', '_' and '.', "
            "not starting with '.' or '-', at most 128 characters"
        )
    return run_id


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @classmethod
    def of(cls, state: Mapping[str, Any], context: RunContext) -> RunFolder:
        """The folder of the run a node works for: the one the caller opened (`context.run_id`),
        else (a graph driven directly, as Studio does) the state's run id, under `runs_dir`."""
        return run_folder(context.runs_dir, context.run_id or state["run_id"])

    @property
    def run_id(self) -> str:
        """The folder's name: the id a user types (`tandem resume RUN_ID`)."""
        return self.path.name

    run_json = property(lambda self: self.path / "run.json")
    checkpoints = property(lambda self: self.path / "checkpoints.sqlite")
    lock = property(lambda self: self.path / "run.lock")
    split = property(lambda self: self.path / "split.json")
    cache = property(lambda self: self.path / "cache")
    profile = property(lambda self: self.path / "profile.json")
    experiments = property(lambda self: self.path / "experiments.jsonl")
    rewards = property(lambda self: self.path / "rewards.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    previous_summary = property(lambda self: self.path / "summary.previous.json")
    """A delivered run's summary.json, set aside while the run goes on after delivery (resume --force):
    the folder then says it is not delivered, and `predict` still has the model it delivered."""
    report = property(lambda self: self.path / "report.md")
    report_html = property(lambda self: self.path / "report.html")
    scores_plot = property(lambda self: self.path / "cv_scores.png")
    rewards_plot = property(lambda self: self.path / "rewards.png")
    model = property(lambda self: self.path / "model.joblib")
    holdout_rows = property(lambda self: self.path / "holdout_rows.json")
    fork_partial = property(lambda self: self.path / "fork.partial")
    data = property(lambda self: self.path / "data.csv")
    """The data of a run started from a DataFrame (`run_task` writes it there, not elsewhere)."""

    def artifacts(self) -> dict[str, str]:
        """What `summary.json` lists, by name relative to the folder (so it stays true when moved)."""
        return {name: getattr(self, name).name for name in ARTIFACTS}


ARTIFACTS = ("model", "summary", "experiments", "rewards", "report", "report_html", "holdout_rows", "profile")


def run_folder(runs_dir: str | Path, run_id: str) -> RunFolder:
    """The folder of a run id under a runs folder; a run id that is not a plain name is refused."""
    return RunFolder(Path(runs_dir).expanduser().resolve() / check_run_id(run_id))


# ---------------------------------------------------------------------------------------------
# run.json: the request, the context and the run's own id
# ---------------------------------------------------------------------------------------------


def save_run_config(folder: RunFolder, request: Mapping[str, Any], context: RunContext, **extra: Any) -> None:
    """Write what a resume needs: the task request and the run context, plus `extra` keys (such
    as a fork's `forked_from`); keys written before are kept.

    The run's own id (`run_id`, its checkpoint thread) is the folder's name when the run is made
    and kept after that. Where the folder is (`runs_dir`) is not stored: it is wherever the folder
    is found, and `load_run_config` says so.
    """
    folder.path.mkdir(parents=True, exist_ok=True)
    kept = read_run_json(folder) if folder.run_json.exists() else {}
    stored = {k: v for k, v in context.to_dict().items() if k != "runs_dir"}
    write_json(
        folder.run_json,
        {**kept, **extra, "run_id": kept.get("run_id", folder.run_id), "request": dict(request), "context": stored},
    )


def read_run_json(folder: RunFolder) -> dict[str, Any]:
    """A run's `run.json` as a JSON object, or `DamagedRun` saying what is wrong with it, in one
    line: a run folder may come from someone else, and every command that opens a run reads it."""
    try:
        data = json.loads(folder.run_json.read_text())
    except (OSError, ValueError) as exc:  # missing, a folder, not text, not JSON
        raise DamagedRun(_run_json_damage(folder, _reason(exc))) from None
    if not isinstance(data, dict):
        raise DamagedRun(_run_json_damage(folder, "not a JSON object"))
    return data


def _reason(exc: Exception) -> str:
    """What went wrong with a file, in a few words (an OSError's own text, without the path)."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split())[:200] or type(exc).__name__


def _run_json_damage(folder: RunFolder, reason: str) -> str:
    return (
        f"run {folder.run_id}: {folder.run_json.name} is damaged ({reason}); it holds the run's request and "
        "settings, which the checkpoints do not: restore it from a copy of the folder"
    )


def load_run_config(folder: RunFolder) -> tuple[dict[str, Any], RunContext]:
    """The request and context of a run, the context pointing at where the folder is now."""
    data = read_run_json(folder)
    request, stored = data.get("request"), data.get("context")
    if not isinstance(request, dict) or not isinstance(stored, dict):
        raise DamagedRun(_run_json_damage(folder, "its request or context is not a JSON object"))
    try:
        context = RunContext.from_dict({**stored, "runs_dir": str(folder.path.parent)})
    except InputError as exc:
        raise DamagedRun(_run_json_damage(folder, str(exc))) from None
    return request, replace(context, run_id=folder.run_id)


def run_thread(folder: RunFolder) -> str:
    """The checkpoint thread of a run: its own id as `run.json` records it.

    That is the folder's name, except in a folder copied or renamed and not yet resumed; the
    first resume makes the new name its id (`adopt_copy`).
    """
    return recorded_run_id(read_run_json(folder), folder)


def recorded_run_id(data: Mapping[str, Any], folder: RunFolder) -> str:
    """The run id a `run.json` records, or the folder's name when it records none it could be."""
    recorded = data.get("run_id")
    return recorded if isinstance(recorded, str) and RUN_ID_RULE.fullmatch(recorded) else folder.run_id


def adopt_copy(folder: RunFolder) -> str | None:
    """Make a copied or renamed run folder a run of its own; return the id it had, if it changed.

    Its checkpoints move to a thread named after the folder and `run.json` records the new id
    and the old one (`copied_from`). Call it under the run's lock, before anything is written.
    A kill between the two steps leaves checkpoints already renamed and `run.json` not yet:
    calling this again finishes the job.
    """
    data = read_run_json(folder)
    old = recorded_run_id(data, folder)
    if old == folder.run_id:
        return None
    _rename_thread(folder.checkpoints, old, folder.run_id)
    recorded = data.get("request")
    request = {**(recorded if isinstance(recorded, dict) else {}), "run_id": folder.run_id}
    write_json(folder.run_json, {**data, "run_id": folder.run_id, "request": request, "copied_from": old})
    return old


def _rename_thread(database: Path, old: str, new: str) -> None:
    """Move every row of checkpoint thread `old` to thread `new`, in one transaction.

    LangGraph's SqliteSaver keys both of its tables by thread id and cannot rename or copy a
    thread (the base class's `copy_thread` is not implemented for SQLite); this is the one place
    tandem writes those tables itself. Nothing happens when `old` has no rows.
    """
    if not database.exists():
        return
    conn = sqlite3.connect(database)
    try:
        with conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table in ("checkpoints", "writes"):
                if table in tables:
                    conn.execute(f"UPDATE {table} SET thread_id = ? WHERE thread_id = ?", (new, old))
    finally:
        conn.close()


def open_checkpointer(folder: RunFolder, *, create: bool = True) -> SqliteSaver:
    """A SQLite checkpointer for one run (its own file, so a run folder is self-contained),
    reading with `CheckpointSerializer`: a run folder may come from someone else.

    Without `create`, a started run whose file is gone is refused (`lost_checkpoints`): opening
    it would create it empty, and a command that only reads would then call the loss "empty"
    and leave an empty database behind."""
    folder.path.mkdir(parents=True, exist_ok=True)
    for path in (
        folder.checkpoints,
        *(folder.path / f"{folder.checkpoints.name}{s}" for s in ("-wal", "-shm", "-journal")),
    ):
        if path.is_symlink():  # SQLite would follow it, and create or change the file it points at
            raise DamagedRun(
                f"run {folder.run_id}: {path.name} is a link; a run's checkpoints are read and written in its own "
                "folder only: put the file itself there"
            )
    if not create and not folder.checkpoints.exists() and run_started(folder):  # a link to nothing is a link
        raise lost_checkpoints(folder, missing=True)
    # CommitPause: a commit that a crash test can stop at (tools/pause_points.py); off by default.
    conn = sqlite3.connect(folder.checkpoints, check_same_thread=False, factory=CommitPause)
    return SqliteSaver(conn, serde=CheckpointSerializer(folder))


class UnsafeCheckpoint(InputError):
    """A checkpoint holds a value tandem never writes (an object to build, a pickle)."""


ALLOWED_TYPES: frozenset[tuple[str, ...]] = SAFE_MSGPACK_TYPES
"""The classes a checkpoint value may name: LangGraph's own safe list (dates, UUIDs, sets,
`Send`, `Interrupt`...). tandem's state is plain JSON-like values (TypedDicts are dicts), so it
adds none; a type that is not here is refused, not built."""
_CONSTRUCTORS = (
    EXT_CONSTRUCTOR_SINGLE_ARG,
    EXT_CONSTRUCTOR_POS_ARGS,
    EXT_CONSTRUCTOR_KW_ARGS,
    EXT_PYDANTIC_V1,
    EXT_PYDANTIC_V2,
)
_LOADABLE = ("null", "bytes", "bytearray", "msgpack")


class CheckpointSerializer(JsonPlusSerializer):
    """LangGraph's serializer in strict mode, which also *says* when it meets a foreign type.

    A msgpack checkpoint value can name any importable callable (`os.system`) with arguments,
    and LangGraph's default serializer calls it on load. Strict mode (an allow-list) does not
    call it but silently hands back its arguments instead, and logs a warning; a run folder that
    holds such a value was written by someone other than tandem, so it is refused with one line
    (`UnsafeCheckpoint`). Every value is first walked without building anything; only values
    naming allowed types reach LangGraph's decoder. Pickled and legacy JSON values are refused
    the same way (tandem writes neither).
    """

    def __init__(self, folder: RunFolder) -> None:
        super().__init__(allowed_msgpack_modules=ALLOWED_TYPES)
        self.folder = folder

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, payload = data
        if kind not in _LOADABLE:
            raise self._refuse(f"a {kind!r} value")
        if kind == "msgpack":
            foreign = _foreign_types(payload)
            if foreign:
                raise self._refuse(f"an object of type {foreign[0]}")
        return super().loads_typed(data)

    def _refuse(self, what: str) -> UnsafeCheckpoint:
        return UnsafeCheckpoint(
            f"run {self.folder.run_id}: {self.folder.checkpoints.name} holds {what}, which tandem never writes; "
            "refused to load it (a run folder can carry code: open only folders from sources you trust)"
        )


def _foreign_types(payload: bytes) -> list[str]:
    """The names of the types a msgpack value would build that are not allowed (nothing is built)."""
    foreign: list[str] = []

    def look(code: int, data: bytes) -> None:
        inner = ormsgpack.unpackb(data, ext_hook=look, option=ormsgpack.OPT_NON_STR_KEYS)
        if code in _CONSTRUCTORS:
            key = (inner[0], inner[1]) if isinstance(inner, list | tuple) and len(inner) > 1 else ("?", "?")
            if key not in ALLOWED_TYPES:
                foreign.append(".".join(map(str, key)))
        elif code == EXT_METHOD_SINGLE_ARG:
            key = tuple(inner[:2]) + tuple(inner[3:4]) if isinstance(inner, list | tuple) else ("?",)
            if key not in SAFE_MSGPACK_METHODS:
                foreign.append(".".join(map(str, key)))
        return None

    try:
        ormsgpack.unpackb(payload, ext_hook=look, option=ormsgpack.OPT_NON_STR_KEYS)
    except (ormsgpack.MsgpackDecodeError, ValueError):
        foreign.append("(undecodable)")
    return foreign


# ---------------------------------------------------------------------------------------------
# Damage found, not hidden
# ---------------------------------------------------------------------------------------------


class DamagedRun(InputError):
    """A run folder whose files are damaged: the message names the file and what can be done."""


def check_database(folder: RunFolder) -> None:
    """Refuse a run whose checkpoint database fails SQLite's `quick_check` (a truncated or
    overwritten file), in one line, before LangGraph reads it and fails with a traceback."""
    if not folder.checkpoints.exists() or folder.checkpoints.stat().st_size == 0:
        return  # nothing to check: whether an empty database is damage depends on the rest (`run_started`)
    try:
        conn = sqlite3.connect(folder.checkpoints)
        try:
            found = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        raise  # the file could not be read (a full disk, no permission): not damage, and said as such
    except sqlite3.DatabaseError as exc:
        found = [str(exc)]
    if found != ["ok"]:
        raise DamagedRun(
            f"run {folder.run_id}: {folder.checkpoints.name} is damaged ({found[0]}), so it cannot be resumed, "
            f"forked or repaired as it is: copy the checkpoints that can still be read into a new run with "
            f"`tandem repair {folder.run_id} --salvage` (this folder is left as it is), or restore the folder "
            "from a copy, or start a new run (a delivered model still predicts)"
        )


@dataclass(frozen=True)
class Salvaged:
    """What `salvage_checkpoints` could copy out of a damaged database."""

    kept: int
    """Checkpoints of the run copied (every one that could be read and decoded)."""
    unreadable: int
    """Rows found damaged or missing below the last one read (a lower bound of what was lost)."""
    head: dict[str, Any]
    """The newest checkpoint copied (its metadata): where the salvaged run continues from."""


_SALVAGE_GAP = 10_000
"""Rowids read past the last readable checkpoint row before giving up (LangGraph's `INSERT OR
REPLACE` leaves gaps, and a lost page loses a run of rows; each look-up costs microseconds)."""


def salvage_checkpoints(source: RunFolder, target: RunFolder) -> Salvaged:
    """Copy every checkpoint of `source`'s run that can still be read into a fresh database in
    `target`, on the thread `target.run_id`; `source` is only read (from a copy).

    Python's sqlite3 has no `.recover`, and SQLite refuses a file shorter than its header says
    ("database disk image is malformed" on any query, which is also what the `sqlite3` shell's
    `.recover` meets). So the file is copied, the copy's header is told how many whole pages it
    really has, and the checkpoints table is read one row at a time by rowid: a row on a lost or
    damaged page is skipped, every other row is kept. A LangGraph checkpoint holds the whole
    state of its step (reducers store the accumulated value), so any one of them is a complete
    point to continue from. Pending writes are not copied: some of a step's writes may be lost,
    and applying half a step would be worse than doing it again. Each row is decoded with
    `CheckpointSerializer` before it is kept, so a planted value is refused here as anywhere.
    """
    thread = run_thread(source)
    serde = CheckpointSerializer(source)
    work = target.path / f".salvage-{secrets.token_hex(4)}"
    work.mkdir()
    try:
        copy = work / source.checkpoints.name
        shutil.copyfile(source.checkpoints, copy)
        wal = source.checkpoints.with_name(source.checkpoints.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        _trust_file_size(copy)
        rows, unreadable = _readable_rows(copy, thread, serde)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not rows:
        raise DamagedRun(
            f"run {source.run_id}: none of the checkpoints in {source.checkpoints.name} can be read, so nothing can be "
            "salvaged: restore the folder from a copy or start a new run"
        )
    rows.sort(key=lambda row: row[2])  # checkpoint ids are time-ordered: the newest is where the run goes on
    saver = open_checkpointer(target)
    try:
        saver.setup()  # LangGraph makes its tables as it always does
    finally:
        saver.conn.close()
    conn = sqlite3.connect(target.checkpoints)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
                "checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(target.run_id, *row[1:]) for row in rows],
            )
    finally:
        conn.close()
    return Salvaged(kept=len(rows), unreadable=unreadable, head=json.loads(rows[-1][6]))


def _trust_file_size(database: Path) -> None:
    """Make a truncated SQLite file readable: its header's page count becomes the whole pages it has.

    Bytes 28-31 of the header are the database size in pages, used when bytes 92-95 match the
    change counter (bytes 24-27); a file cut short then claims pages it lacks and SQLite refuses
    all of it. Nothing else in the file is touched.
    """
    with database.open("r+b") as fh:
        header = fh.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
            return
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        size = database.stat().st_size
        pages = size // page_size
        if pages and int.from_bytes(header[28:32], "big") > pages:
            fh.truncate(pages * page_size)
            fh.seek(28)
            fh.write(pages.to_bytes(4, "big"))


def _readable_rows(database: Path, thread: str, serde: CheckpointSerializer) -> tuple[list[tuple[Any, ...]], int]:
    """The checkpoint rows of `thread` that can be read and decoded, and how many rows could not."""
    rows: list[tuple[Any, ...]] = []
    failed, lost, since_last, rowid = 0, 0, 0, 0
    conn = sqlite3.connect(database)
    try:
        while since_last < _SALVAGE_GAP:
            rowid += 1
            try:
                row = conn.execute(
                    "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
                    "FROM checkpoints WHERE rowid = ?",
                    (rowid,),
                ).fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return [], 0  # the schema itself is lost
                row, failed = None, failed + 1
            except sqlite3.DatabaseError:
                row, failed = None, failed + 1
            if row is None:
                since_last += 1
                continue
            since_last, lost = 0, failed  # failures past the last row found may be past the end: not counted
            if row[0] != thread:
                continue
            try:
                if row[4] == "msgpack" and "(undecodable)" in _foreign_types(row[5]):
                    raise ValueError("not msgpack")  # garbled bytes: damage, not a planted type
                serde.loads_typed((row[4], row[5]))  # a well-formed value naming a foreign type is refused
                json.loads(row[6])
            except UnsafeCheckpoint:
                raise
            except Exception:  # the row was read but its value is cut or garbled: not a checkpoint to go on from
                failed += 1
                lost = failed
                continue
            rows.append(tuple(row))
    finally:
        conn.close()
    return rows, lost


def run_started(folder: RunFolder) -> bool:
    """Whether a run got past its start: setup wrote its split, or the run has a ledger or a summary.
    Such a run has checkpoints; finding none means they were lost, not that it never ran."""
    return any(p.exists() for p in (folder.split, folder.experiments, folder.summary))


def lost_checkpoints(folder: RunFolder, *, missing: bool = False, location: str | None = None) -> DamagedRun:
    """A started run whose checkpoints are gone: the file deleted (`missing`) or emptied, or, for a
    run whose checkpoints live in PostgreSQL, its thread not in the database read (`location`,
    default the one `run.json` records). That one is named, not a SQLite file the run never had,
    and so is the way to read a database that moved."""
    recorded = read_run_json(folder).get(CHECKPOINT_DB_KEY) if folder.run_json.exists() else None
    database = location or (recorded if isinstance(recorded, str) and recorded else None)
    if database is not None:  # recorded without its password (postgres_checkpoints.public_location)
        return DamagedRun(
            f"run {folder.run_id}: its checkpoint thread {run_thread(folder)!r} is not in {database} although the "
            "run had started, so its checkpoints are lost or in another database: if the database moved, give it "
            "with --checkpoint-db; otherwise start a new run, or pass --force to tandem resume to start this one "
            "again in place"
        )
    state, restore = ("missing", "restore it from a copy of the folder, ") if missing else ("empty", "")
    return DamagedRun(
        f"run {folder.run_id}: {folder.checkpoints.name} is {state} although the run had started, so its "
        f"checkpoints are lost; continuing would start it again from scratch: {restore}start a new run, or pass "
        "--force to tandem resume to start this one again in place"
    )


def check_ledger(folder: RunFolder, ledger: list[Any]) -> None:
    """Refuse a run whose `experiments.jsonl` does not agree with its checkpoint's ledger.

    The reward node writes the file just before its checkpoint is saved, so a run killed in
    between has one row more than its checkpoint: that is not damage (resuming redoes the step).
    A row that is not JSON, an experiment the checkpoint does not have or one missing is.
    """
    if not folder.experiments.exists():
        if folder.summary.exists():
            raise _ledger_damage(folder, "is missing")
        return
    lines = folder.experiments.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    else:
        raise _ledger_damage(folder, "ends in the middle of a row")
    ids = []
    for number, line in enumerate(lines, 1):
        try:
            ids.append(json.loads(line)["id"])
        except (ValueError, TypeError, KeyError):
            raise _ledger_damage(folder, f"has a broken row (line {number})") from None
    expected = [row["id"] for row in ledger]
    if not (ids == expected or ids[:-1] == expected):
        raise _ledger_damage(folder, f"lists {len(ids)} experiments where the checkpoints hold {len(expected)}")


def _ledger_damage(folder: RunFolder, what: str) -> DamagedRun:
    return DamagedRun(
        f"run {folder.run_id}: {folder.experiments.name} {what}; rebuild it and the reports from the "
        f"checkpoints with: tandem repair {folder.run_id}"
    )


# ---------------------------------------------------------------------------------------------
# One writer per run
# ---------------------------------------------------------------------------------------------


class RunInUse(InputError):
    """Another process holds the run's lock."""


@contextmanager
def run_lock(folder: RunFolder) -> Iterator[None]:
    """Hold the run's exclusive lock while the body runs; another process gets `RunInUse`.

    An `flock` on `run.lock` in the folder: the OS releases it when the process ends, however it
    ends, so a crashed run never stays locked. The holder writes its pid into the file, for the
    message the next process prints. The file itself stays (removing it would race).
    """
    try:  # never through a link: the holder truncates the file it opens
        fd = os.open(folder.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise  # a full disk, no permission: said as such by the command line
        raise DamagedRun(
            f"run {folder.run_id}: {folder.lock.name} cannot be opened as the run's lock file ({_reason(exc)}); "
            "it is a link or not a plain file: remove it"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DamagedRun(f"run {folder.run_id}: {folder.lock.name} is not a plain file: remove it")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUse(f"run {folder.run_id} is in use by pid {_lock_holder(fd)}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _lock_holder(fd: int) -> str:
    """The pid the lock's holder wrote (it may be a moment late just after it took the lock)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.01)
    return "(unknown)"


@contextmanager
def new_run_folder(folder: RunFolder, *, exists: str) -> Iterator[None]:
    """Create a run's folder and hold its lock while the body runs; `exists` is the message when
    the name is taken.

    `os.mkdir` makes the name exclusively, so two processes never both create a run of one id.
    A folder that is there without `run.json` is what a process killed while creating a run
    leaves (only the lock file, or a fork's `fork.partial` marker): under the lock it is emptied
    and made again. Anything else keeps the name taken.
    """
    folder.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.path.mkdir()
        created = True
    except FileExistsError:
        created = False
        if not folder.path.is_dir():
            raise InputError(exists) from None
    with run_lock(folder):
        if not created:
            leftovers = [p for p in folder.path.iterdir() if p != folder.lock]
            if folder.run_json.exists() or (leftovers and not folder.fork_partial.exists()):
                raise InputError(exists)
            for path in leftovers:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        yield


def remove_run_folder(folder: RunFolder) -> None:
    """Remove a run that never got past setup, so that trying again with the same id works."""
    shutil.rmtree(folder.path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary file that replaces `path` only when the body finishes: a kill mid-write never
    leaves a half file, and two writers never share a temporary file.

    The temporary file has a name of its own in the same folder (so the rename is atomic), is
    fsynced before the rename and removed if the body fails. It is created with `os.open` and
    `O_EXCL`, like `tempfile.mkstemp`, but with the usual permissions (mkstemp's are owner-only).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write() names no file: say which one (disk full while writing X)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as fh:
        fh.write(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write; NaN becomes null."""
    write_text(path, json.dumps(json_clean(data), indent=2, default=str))


def write_jsonl(path: Path, rows: list[Any]) -> None:
    write_text(path, "".join(json.dumps(json_clean(r), default=str) + "\n" for r in rows))


def json_clean(value: Any) -> Any:
    """Plain JSON values: NaN and infinities become None, numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# The data, read once per process
# ---------------------------------------------------------------------------------------------

_TABLES: OrderedDict[tuple[str, str, str], pd.DataFrame] = OrderedDict()
_TABLES_KEPT = 4


def remember_data(task: TaskInfo, loaded: LoadedTask) -> None:
    """Keep the tables setup was handed for the rest of this process, so no node reads them again."""
    _keep((task["csv_path"], task["csv_sha256"], task["target"]), _labelled(loaded.table, task["target"]))
    if loaded.holdout_table is not None and task["holdout_source"] != "internal":
        _keep((task["holdout_source"], "", task["target"]), _labelled(loaded.holdout_table, task["target"]))


def _keep(key: tuple[str, str, str], frame: pd.DataFrame) -> pd.DataFrame:
    _TABLES[key] = frame
    _TABLES.move_to_end(key)
    while len(_TABLES) > _TABLES_KEPT:
        _TABLES.popitem(last=False)
    return frame


def _labelled(table: pd.DataFrame, target: str) -> pd.DataFrame:
    """The rows with a target value (the table itself when it has no others: no copy is kept)."""
    known = table[target].notna()
    return table if bool(known.all()) else table[known]


def _table(path: str, sha256: str, target: str) -> pd.DataFrame:
    """The rows of a CSV that have a target value; read (and its hash checked) once per process.

    A run reopened in a new process reads its CSV again: if the bytes are not the ones the run
    started from, it stops with one line instead of training on other data.
    """
    key = (path, sha256, target)
    if key in _TABLES:
        _TABLES.move_to_end(key)
        return _TABLES[key]
    table, actual = read_table_hashed(path, keep=[target])
    if sha256 and actual != sha256:
        raise InputError(
            f"{path} has changed since the run started (its SHA-256 differs); "
            "put the original file back to continue this run, or start a new run"
        )
    return _keep(key, _labelled(table, target))


def data_path(task: TaskInfo, folder: RunFolder) -> str:
    """The run's CSV: the copy in its own folder for a run started from a DataFrame (found
    wherever the folder is now; its hash is checked as any CSV's), else the file the task names."""
    return str(folder.data) if folder.data.exists() else task["csv_path"]


class _DevEntry(NamedTuple):
    """What a run's process keeps of its data between steps, instead of the whole table."""

    X: pd.DataFrame
    y: pd.Series
    mapped_file: Path | None
    holdout: pd.DataFrame | None  # the holdout rows of the run's own table (None: a separate holdout CSV)


_DEV: OrderedDict[tuple[Any, ...], _DevEntry] = OrderedDict()
_DEV_KEPT = 2


def _remove_orphaned_shared_dirs() -> None:
    """Remove the mapped-frame folders of tandem processes that no longer exist (killed with
    SIGKILL, so their exit handler never ran); the folder's name carries its process id."""
    for folder in Path(tempfile.gettempdir()).glob("tandem-dev-*-*"):
        pid = folder.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # another user's live process: not ours to touch
            continue


@lru_cache(maxsize=1)
def _shared_dir() -> Path:
    """This process's folder of memory-mapped development frames, made on first use and removed at exit."""
    _remove_orphaned_shared_dirs()
    folder = Path(tempfile.mkdtemp(prefix=f"tandem-dev-{os.getpid()}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _mapped(X: pd.DataFrame, y: pd.Series) -> tuple[pd.DataFrame, pd.Series, Path | None]:
    """The development part backed by a memory-mapped file instead of private memory.

    Why: joblib's loky backend sends a fold task every numeric array of `X` above 1 MB as a
    memory-mapped file; an array that is already a file mapping travels as its path, without
    being hashed and written again for every fold, and its pages are shared by this process and
    every worker (counted once, not once in this process and once in the workers' copy). The file
    lives in a temporary folder removed when the process exits (or, after a SIGKILL, by the
    next tandem process that maps a frame); if it cannot be written (a full disk), the frame
    stays in memory as it was.
    """
    try:
        path = _shared_dir() / f"dev-{secrets.token_hex(8)}.joblib"
        joblib.dump((X, y), path)
        X_mapped, y_mapped = joblib.load(path, mmap_mode="r")
    except OSError:
        return X, y, None
    return X_mapped, y_mapped, path


def dev_data(task: TaskInfo, folder: RunFolder) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """The development part (features, target) and the fold of every row in every repeat
    (shape (repeats, rows)), as fixed at setup.

    Built once per run and process, not once per step: on a million rows every fresh slice of
    the development part cost hundreds of megabytes (issue 10). Its arrays are mapped from a
    file (`_mapped`), so fold tasks in joblib's workers share them instead of receiving copies.
    The cache is keyed by the data file, its hash, the target and the split file's version.
    Callers get shallow, copy-on-write copies: one that assigns to its frame never changes the
    cached one.
    """
    entry = _dev_entry(task, folder)
    return entry.X.copy(deep=False), entry.y.copy(deep=False), _split(folder).fold_matrix()


def dev_data_file(task: TaskInfo, folder: RunFolder) -> Path | None:
    """The file `dev_data`'s frame is mapped from (None when it could not be written), which fold
    tasks on a cluster name instead of carrying the frame (tools/training.py `MappedData`)."""
    return _dev_entry(task, folder).mapped_file


def _dev_entry(task: TaskInfo, folder: RunFolder) -> _DevEntry:
    """The run's development part, and its holdout rows, cut from the table once.

    The whole table is then forgotten: between setup and delivery the process holds the mapped
    development part and the holdout rows, not the table they came from (on the 1M-row speed
    task, 157 MB less in the run's process through the whole search)."""
    split = _split(folder)
    path = data_path(task, folder)
    stat = folder.split.stat()
    key = (path, task["csv_sha256"], task["target"], str(folder.split), stat.st_mtime_ns, stat.st_size)
    if key in _DEV:
        _DEV.move_to_end(key)
        return _DEV[key]
    table = _table(path, task["csv_sha256"], task["target"])
    rows = list(split.dev_rows)
    features = [c for c in table.columns if c != task["target"]]
    # one copy of each, no drop; then moved into a mapped file (the copy is freed)
    X, y, mapped_file = _mapped(table.loc[rows, features], table.loc[rows, task["target"]])
    holdout = table.loc[list(split.holdout_rows)] if split.holdout_source == "internal" else None
    _DEV[key] = _DevEntry(X, y, mapped_file, holdout)
    for cached in [k for k, frame in _TABLES.items() if frame is table]:
        del _TABLES[cached]
    while len(_DEV) > _DEV_KEPT:
        old = _DEV.popitem(last=False)[1].mapped_file
        if old is not None:  # mapped pages stay valid after the unlink for every process that mapped it
            old.unlink(missing_ok=True)
    return _DEV[key]


def holdout_data(task: TaskInfo, folder: RunFolder) -> tuple[pd.DataFrame, pd.Series]:
    """The holdout part: only the delivery node calls this."""
    split = _split(folder)
    own = _dev_entry(task, folder).holdout if split.holdout_source == "internal" else None
    frame = own if own is not None else _table(split.holdout_source, "", task["target"])
    return frame.drop(columns=[task["target"]]), frame[task["target"]]


def _split(folder: RunFolder) -> Split:
    """The run's split, read once per version of the file (a run made again under the same id
    in the same process has a new one)."""
    stat = folder.split.stat()
    return _split_file(str(folder.split), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _split_file(path: str, mtime_ns: int, size: int) -> Split:
    return Split.load(Path(path))


# ---------------------------------------------------------------------------------------------
# The dataset profile: one file in the folder, a reference in the state
# ---------------------------------------------------------------------------------------------


def _profile_bytes(profile: DatasetProfile) -> bytes:
    return json.dumps(json_clean(profile.model_dump(mode="json")), indent=2, default=str).encode("utf-8")


def save_profile(folder: RunFolder, profile: DatasetProfile) -> ProfileRef:
    """Write the run's profile once, atomically, as `profile.json`; the reference the state keeps.

    On wide data the profile is megabytes and the checkpointer stores every version of the
    state, so it lives in the folder and each checkpoint holds only its name and hash.
    """
    data = _profile_bytes(profile)
    write_bytes(folder.profile, data)
    return ProfileRef(file=folder.profile.name, sha256=hashlib.sha256(data).hexdigest())


def profile_of(state: Mapping[str, Any], folder: RunFolder) -> DatasetProfile:
    """The run's dataset profile, read from its folder once per version of the file and checked
    against the SHA-256 the state records; a missing or altered file is a `DamagedRun`.

    A state written by tandem before the profile moved out of the checkpoints holds the profile
    itself: it is read as it is (it came through the checkpoint allow-list like any value).
    """
    ref = state["profile"]
    if "columns" in ref:  # an older run folder: the profile inline in every checkpoint
        return DatasetProfile.model_validate(ref)
    name = ref.get("file")
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        raise _foreign_profile(folder, name)
    path = folder.path / name
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise _profile_damage(folder, name, "is missing") from None
    return _profile_file(str(path), str(ref.get("sha256")), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _profile_file(path: str, sha256: str, mtime_ns: int, size: int) -> DatasetProfile:
    """One version of a profile file, hash-checked (the bytes hashed are the bytes parsed)."""
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _profile_damage(
            RunFolder(Path(path).parent), Path(path).name, "does not match the SHA-256 its checkpoints record"
        )
    try:
        return DatasetProfile.model_validate_json(data)
    except ValueError:
        raise _profile_damage(RunFolder(Path(path).parent), Path(path).name, "is not a profile") from None


def _foreign_profile(folder: RunFolder, name: Any) -> DamagedRun:
    return DamagedRun(
        f"run {folder.run_id}: its checkpoints name the profile file {name!r}, which is not a file of the run "
        "folder; refused to read it (open only run folders from sources you trust)"
    )


def _profile_damage(folder: RunFolder, name: str, what: str) -> DamagedRun:
    return DamagedRun(
        f"run {folder.run_id}: {name} {what}; rebuild it from the run's CSV with: tandem repair {folder.run_id}"
    )


def check_profile(folder: RunFolder, values: Mapping[str, Any]) -> None:
    """Refuse, in one line, a run past setup whose profile file is missing or altered, before
    it runs a step that needs it."""
    if "profile" in values:
        profile_of(values, folder)


def restore_profile(folder: RunFolder, request: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """Write a missing or altered `profile.json` again, as setup did; whether it had to.

    Setup profiles the development rows of the validated CSV, and the profiler is deterministic,
    so the same CSV and split give the same bytes: the result is written only if its SHA-256 is
    the one the checkpoints record (else the CSV or the profiler changed, and that is said).
    """
    try:
        check_profile(folder, values)
        return False
    except DamagedRun:
        pass
    task, ref = values["task"], values["profile"]
    if ref.get("file") != folder.profile.name:
        raise _foreign_profile(folder, ref.get("file"))
    csv = data_path(task, folder)
    loaded = load_task({**request, "csv_path": csv})
    if loaded.sha256 != task["csv_sha256"]:
        raise DamagedRun(
            f"run {folder.run_id}: {folder.profile.name} is damaged and {csv} has changed since the run "
            "started, so it cannot be rebuilt: put the original CSV back, or start a new run"
        )
    prepared = loaded.prepared
    frame = prepared.frame.loc[list(_split(folder).dev_rows)]
    data = _profile_bytes(profile_dataset(frame, prepared.target, prepared.task_type))
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        raise DamagedRun(
            f"run {folder.run_id}: {folder.profile.name} is damaged and profiling the CSV again does not give the "
            "recorded profile (another tandem version?); restore the folder from a copy or start a new run"
        )
    write_bytes(folder.profile, data)
    return True


def problem_of(task: TaskInfo) -> Problem:
    return Problem(
        task_type=task["task_type"],
        metrics=tuple(task["metrics"]),
        primary_metric=task["primary_metric"],
        classes=tuple(task["classes"]),
        positive_class=task["positive_class"],
        seed=task["seed"],
    )


def new_run_id(target: str) -> str:
    """A sortable, readable run id: time stamp plus the target's name."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", target).strip("-").lower()[:24] or "run"
    return f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{slug}"
