"""The local results store: every benchmark result and league match, appended, never overwritten.

Why SQLite with triggers: results accumulate across runs, machines and versions, and a later
bench must never rewrite an earlier number (the profiles, AUP and Elo ratings are recomputed
from these rows, by the code or by hand). The triggers make the tables append-only at the
database level: an UPDATE or DELETE aborts, whoever issues it. One file, `results.sqlite` in the
results folder, holds three tables:

- `benches`: one row per `tandem bench` / `tandem league` invocation (command, machine, date);
- `results`: one row per (player, task, seed) played, with every holdout metric, wall time,
  tokens and cost;
- `matches`: one row per league match, with both scores, the outcome and the Elo ratings before
  and after, so the ladder can be checked against the Elo formula row by row.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import sqlite3
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tandem.tools.errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS benches (
    bench_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,            -- 'bench' | 'league'
    created_at TEXT NOT NULL,      -- UTC, ISO 8601
    command TEXT NOT NULL,         -- how it was started
    settings TEXT NOT NULL,        -- JSON: tasks, players, seeds, budget...
    machine TEXT NOT NULL          -- JSON: platform, CPUs, Python, library versions, git commit
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bench_id TEXT NOT NULL REFERENCES benches(bench_id),
    created_at TEXT NOT NULL,
    task TEXT NOT NULL,
    fingerprint TEXT NOT NULL,     -- hash of the task's data and split
    task_type TEXT NOT NULL,
    metric TEXT NOT NULL,          -- the primary metric
    greater_is_better INTEGER NOT NULL,
    player TEXT NOT NULL,
    seed INTEGER NOT NULL,
    budget REAL NOT NULL,          -- seconds the player was given
    status TEXT NOT NULL,          -- 'ok' | 'failed'
    score REAL,                    -- primary metric on the holdout (NULL when failed)
    scores TEXT NOT NULL,          -- JSON: every metric on the holdout
    wall_seconds REAL NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd REAL,                 -- NULL: tokens spent at an unknown price
    error TEXT,
    details TEXT NOT NULL          -- JSON: run folder, iterations, FLAML's best estimator...
);
CREATE TABLE IF NOT EXISTS matches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    league_id TEXT NOT NULL REFERENCES benches(bench_id),
    created_at TEXT NOT NULL,
    task TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    metric TEXT NOT NULL,
    greater_is_better INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    budget REAL NOT NULL,
    player_a TEXT NOT NULL,
    player_b TEXT NOT NULL,
    result_a INTEGER NOT NULL REFERENCES results(id),
    result_b INTEGER NOT NULL REFERENCES results(id),
    score_a REAL,
    score_b REAL,
    outcome REAL NOT NULL,         -- for player A: 1 win, 0.5 draw, 0 loss
    tolerance REAL NOT NULL,
    k REAL NOT NULL,
    rating_a_before REAL NOT NULL,
    rating_b_before REAL NOT NULL,
    rating_a_after REAL NOT NULL,
    rating_b_after REAL NOT NULL
);
"""
APPEND_ONLY = """
CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} are append-only: add a new row instead'); END;
CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} are append-only: rows are never deleted'); END;
"""
JSON_COLUMNS = {"scores", "details", "settings", "machine"}


def default_results_dir() -> str:
    """`$TANDEM_RESULTS_DIR`, else `./results`."""
    return os.environ.get("TANDEM_RESULTS_DIR") or str(Path("results").resolve())


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


#: Where a checkout keeps its published results: a bench writes there, so changes there are data,
#: not a change to the code that played.
RESULTS_IN_CHECKOUT = "benchmarks/results"
UNCOMMITTED = "+uncommitted changes"


def code_commit(folder: Path) -> str | None:
    """The commit of the checkout holding `folder`, with `+uncommitted changes` when tracked code
    differs from it; None outside a git checkout. The results a bench appends to do not count: a
    second bench before the first is committed would otherwise claim its code was uncommitted."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=5, check=False).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        dirty = git(
            "status", "--porcelain", "--untracked-files=no", "--", ":(top)", f":(top,exclude){RESULTS_IN_CHECKOUT}"
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + (UNCOMMITTED if dirty.strip() else "")) or None


@functools.cache
def code_identity() -> str:
    """What identifies the code that plays now, so that a league reuses only the games this same
    code played (`ResultsStore.find_result`): the commit, with a hash of the uncommitted changes to
    tracked files when there are any (two different edits of one commit are two codes), or the
    installed version outside a checkout."""
    folder = Path(__file__).resolve().parent
    commit = code_commit(folder)
    if commit is None:
        try:
            return f"tandem-ml {metadata.version('tandem-ml')}"
        except metadata.PackageNotFoundError:
            return "tandem-ml, version unknown"
    if not commit.endswith(UNCOMMITTED):
        return commit
    try:
        diff = subprocess.run(
            ["git", "diff", "HEAD", "--no-ext-diff", "--", ":(top)", f":(top,exclude){RESULTS_IN_CHECKOUT}"],
            cwd=folder, capture_output=True, timeout=30, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        diff = os.urandom(16)  # changes that cannot be read match no stored game
    return f"{commit} {hashlib.sha256(diff).hexdigest()[:12]}"


def machine_info() -> dict[str, Any]:
    """What a number was measured on: enough to tell two machines (and two versions) apart."""
    import lightgbm
    import sklearn

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "lightgbm": lightgbm.__version__,
    }
    try:
        import flaml

        info["flaml"] = flaml.__version__
    except ImportError:
        info["flaml"] = None
    info["git_commit"] = code_commit(Path(__file__).resolve().parent)
    return info


_ASIDE = "move it aside or give another --results-dir"


def _lacking_columns(conn: sqlite3.Connection, tables: Iterable[str] = ("benches", "results", "matches")) -> str:
    """The columns `SCHEMA` defines that the store's tables lack ('' when none): a table that
    already existed is kept as it is by CREATE TABLE IF NOT EXISTS, whatever its columns."""
    expected = sqlite3.connect(":memory:")
    try:
        expected.executescript(SCHEMA)
        lacking = []
        for table in sorted(tables):
            want = [row[1] for row in expected.execute(f"PRAGMA table_info({table})")]
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in want if c not in have]
            if missing:
                lacking.append(f"table {table} lacks {', '.join(missing)}")
        return "; ".join(lacking)
    finally:
        expected.close()


_OUTCOMES = {0.0, 0.5, 1.0}


def _damage(table: str, row: dict[str, Any]) -> str | None:
    """What is wrong with a stored row, or None: each column holds the type the schema gives it
    (SQLite stores whatever it is handed), JSON columns hold objects, and a match's outcome, K and
    ratings are what `league.replay` can replay."""
    for column, value in row.items():
        kind = _COLUMN_TYPES[table].get(column)
        if column in JSON_COLUMNS:
            if not isinstance(value, dict):
                return f"holds no JSON object in {column}"
        elif value is None:
            if column in _NOT_NULL[table]:
                return f"has no {column}"
        elif kind == "TEXT" and not isinstance(value, str):
            return f"holds {value!r} in {column} (text expected)"
        elif kind == "INTEGER" and (not isinstance(value, int) or isinstance(value, bool)):
            return f"holds {value!r} in {column} (a whole number expected)"
        elif kind == "REAL" and (not isinstance(value, int | float) or not math.isfinite(value)):
            return f"holds {value!r} in {column} (a finite number expected)"
    if table == "matches":
        if row["outcome"] not in _OUTCOMES:
            return f"holds the outcome {row['outcome']!r} (1, 0.5 or 0)"
        if row["k"] <= 0 or row["tolerance"] < 0:
            return f"holds K {row['k']!r} and tolerance {row['tolerance']!r} (K above 0, tolerance at least 0)"
    if table == "results" and row.get("status") not in ("ok", "failed"):
        return f"holds the status {row.get('status')!r} (ok or failed)"
    return None


def _schema_columns() -> tuple[dict[str, dict[str, str]], dict[str, set[str]]]:
    """Each table's column types and NOT NULL columns, as `SCHEMA` declares them."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        info = {t: conn.execute(f"PRAGMA table_info({t})").fetchall() for t in ("benches", "results", "matches")}
    finally:
        conn.close()
    types = {t: {row[1]: row[2] for row in rows} for t, rows in info.items()}
    not_null = {t: {row[1] for row in rows if row[3] and not row[5]} for t, rows in info.items()}
    return types, not_null


_COLUMN_TYPES, _NOT_NULL = _schema_columns()


class ResultsStore:
    """Append-only access to `results.sqlite` in a results folder."""

    def __init__(self, results_dir: str | Path) -> None:
        self.dir = Path(results_dir).expanduser().resolve()
        self.path = self.dir / "results.sqlite"
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as conn:
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                ours = {"benches", "results", "matches"}
                if tables & ours and not ours <= tables and not _lacking_columns(conn, tables & ours):
                    lost = ", ".join(sorted(ours - tables))  # made again empty, it would pass for no matches
                    raise InputError(f"{self.path} has lost its table {lost}, which tandem never drops; {_ASIDE}")
                triggers = "".join(APPEND_ONLY.format(table=t) for t in sorted(ours))
                conn.executescript(SCHEMA + triggers)
                lacking = _lacking_columns(conn)
        except sqlite3.OperationalError:
            raise  # locked, read-only, a full disk: the command says so as an OS error
        except sqlite3.DatabaseError as exc:  # not SQLite at all, or damaged
            raise InputError(f"{self.path} is not a readable results store ({exc}); {_ASIDE}") from None
        if lacking:  # a database of another program, or of another shape, that happens to have the name
            raise InputError(f"{self.path} is not tandem's results store: {lacking}; {_ASIDE}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            with conn:  # commit on success, roll back on error
                yield conn
        finally:
            conn.close()

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        values = {k: json.dumps(v, default=str) if k in JSON_COLUMNS else v for k, v in row.items()}
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._connect() as conn:
            cursor = conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(values.values()))
            return int(cursor.lastrowid or 0)

    def _select(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of one table (`SELECT * FROM table ...`), each checked as tandem writes it
        (`_damage`): the profiles, AUP and Elo ratings are computed from them, and a row edited by
        hand (text for a score, an outcome of 5, a negative K) changed the ratings without a word
        or stopped the command with a traceback."""
        table = sql.split(" FROM ", 1)[1].split()[0]
        with self._connect() as conn:
            rows = [dict(r) for r in conn.execute(sql, params)]
        for row in rows:
            for key in JSON_COLUMNS & row.keys():
                try:
                    row[key] = json.loads(row[key]) if isinstance(row[key], str) else None
                except ValueError:
                    row[key] = None
            if problem := _damage(table, row):
                name = row.get("id", row.get("bench_id"))
                raise InputError(f"{self.path}: {table} row {name!r} {problem}, which tandem never writes; {_ASIDE}")
        return rows

    def add_bench(self, bench_id: str, kind: str, command: str, settings: dict[str, Any]) -> None:
        self._insert(
            "benches",
            {
                "bench_id": bench_id,
                "kind": kind,
                "created_at": now(),
                "command": command,
                "settings": settings,
                "machine": machine_info(),
            },
        )

    def add_result(self, row: dict[str, Any]) -> int:
        return self._insert("results", {"created_at": now(), **row})

    def add_match(self, row: dict[str, Any]) -> int:
        return self._insert("matches", {"created_at": now(), **row})

    def benches(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Benches (or leagues) in the order they were started; two started in the same second keep
        the order they were stored in (created_at has whole seconds)."""
        if kind is None:
            return self._select("SELECT * FROM benches ORDER BY created_at, rowid")
        return self._select("SELECT * FROM benches WHERE kind = ? ORDER BY created_at, rowid", (kind,))

    def bench(self, bench_id: str) -> dict[str, Any] | None:
        rows = self._select("SELECT * FROM benches WHERE bench_id = ?", (bench_id,))
        return rows[0] if rows else None

    def results(self, bench_id: str | None = None) -> list[dict[str, Any]]:
        if bench_id is None:
            return self._select("SELECT * FROM results ORDER BY id")
        return self._select("SELECT * FROM results WHERE bench_id = ? ORDER BY id", (bench_id,))

    def tandem_runs(self, bench_id: str) -> list[tuple[str, int, Path]]:
        """(task, seed, run folder) of the bench's tandem games that ended with a score: the runs
        whose ledgers the studies of a bench read again (scripts/selection_study.py and others).

        The folder is where this store keeps the run (`runs/` beside `results.sqlite`), not the path
        recorded when it was played: a results folder is copied and cloned, and the recorded path
        names the machine and checkout that played it."""
        return [
            (row["task"], int(row["seed"]), self.dir / "runs" / Path(row["details"]["run_dir"]).name)
            for row in self.results(bench_id)
            if row["player"] == "tandem" and row["status"] == "ok"
        ]

    def result(self, result_id: int) -> dict[str, Any] | None:
        rows = self._select("SELECT * FROM results WHERE id = ?", (result_id,))
        return rows[0] if rows else None

    def find_result(
        self, player: str, fingerprint: str, metric: str, budget: float, seed: int
    ) -> dict[str, Any] | None:
        """The latest stored result of this player on this task, budget and seed, played by the
        code that runs now (`code_identity`): a game of an earlier tandem says nothing of this one."""
        rows = self._select(
            "SELECT * FROM results WHERE player = ? AND fingerprint = ? AND metric = ? AND budget = ? AND seed = ? "
            "AND CASE WHEN json_valid(details) THEN json_extract(details, '$.code') END = ? ORDER BY id DESC LIMIT 1",
            (player, fingerprint, metric, float(budget), int(seed), code_identity()),
        )
        return rows[0] if rows else None

    def matches(self) -> list[dict[str, Any]]:
        """Every match ever played in this store, in the order they were played."""
        return self._select("SELECT * FROM matches ORDER BY id")
