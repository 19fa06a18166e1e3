"""Checkpoints in PostgreSQL: a run that any machine reaching the database can resume or fork.

By default a run's checkpoints are a SQLite file in its folder (`graph.persistence`). With
`--checkpoint-db postgresql://USER@HOST:PORT/DB` (or `$TANDEM_CHECKPOINT_DB`) a new run puts
them in PostgreSQL through LangGraph's `PostgresSaver` instead, and `run.json` records where
(`"checkpoint_db"`), so resume, history, fork and repair find them from the folder alone.

What is recorded never holds a password: it is the connection string with the password taken
out. The password a process connects with comes from, in order, a connection string given to
this process (`--checkpoint-db` or `$TANDEM_CHECKPOINT_DB`) naming the same database, then
libpq's own `$PGPASSWORD` or `~/.pgpass` (`$PGPASSFILE`). So a run folder can be shared or
copied without handing out the database's password.

Checkpoints are read with tandem's allow-list serializer (`CheckpointSerializer`), as from
SQLite: a database written by someone else cannot make tandem build objects. The checkpoint
thread is the run's id, as in SQLite; one database serves many runs, so a new run or a fork whose
id already has checkpoints there, or is claimed by another run folder (the table
`tandem_thread_claims`, which makes the claim atomic), is refused (pick another `--run-id`), never mixed in.

psycopg and `langgraph-checkpoint-postgres` are the optional extra `postgres`
(`pip install 'tandem-ml[postgres]'`); they are imported only when a run uses PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from langgraph.checkpoint.base import BaseCheckpointSaver

from tandem.graph.persistence import (
    CHECKPOINT_DB_KEY,
    CheckpointSerializer,
    RunFolder,
    UnsafeCheckpoint,
    open_checkpointer,
    read_run_json,
    recorded_run_id,
    run_started,
    write_json,
)
from tandem.tools.data import InputError
from tandem.tools.errors import without_password

if TYPE_CHECKING:  # the optional extra: imported for the type checker only
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

CHECKPOINT_DB_ENV = "TANDEM_CHECKPOINT_DB"
SCHEMES = ("postgresql", "postgres")

_PASSWORDS: dict[str, str] = {}
"""Passwords given to this process, by the password-free connection string they belong to; never written."""
_SET_UP: set[str] = set()
"""Databases whose tables this process has created or migrated (`PostgresSaver.setup()`, once each)."""


class CheckpointDatabaseError(InputError):
    """The checkpoint database cannot be used: a bad connection string, or the server refused or is unreachable."""


def public_location(text: str) -> str:
    """A `postgresql://` connection string without its password (the form `run.json` records);
    the password, if it had one, is remembered for this process. Anything else is refused."""
    try:
        parts = urlsplit(text.strip())
    except ValueError:  # a bracketed host left open, "[::1/db"
        parts = urlsplit("")
    if parts.scheme not in SCHEMES or not parts.path.strip("/"):
        raise CheckpointDatabaseError(
            f"--checkpoint-db takes a connection string like postgresql://USER@HOST:5432/DATABASE, got {_shown(text)!r}"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    # the authority's password is percent-encoded; parse_qsl has decoded the query's already
    password = unquote(parts.password) if parts.password else next((v for k, v in query if k == "password"), None)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"  # an IPv6 address
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        raise CheckpointDatabaseError(
            f"the port of checkpoint database {_shown(text)!r} is not a number from 1 to 65535"
        ) from None
    if port:
        netloc += f":{port}"
    if parts.username:
        netloc = f"{quote(unquote(parts.username), safe='')}@{netloc}"
    kept = urlencode([(k, v) for k, v in query if k != "password"], quote_via=quote)  # libpq reads no "+" as space
    public = urlunsplit(("postgresql", netloc, parts.path, kept, ""))
    if password:
        _PASSWORDS[public] = password
    return public


def _shown(text: str) -> str:
    """A connection string as an error message may show it: its password masked."""
    return without_password(text, mask="***")


def location_for_new_run(given: str | None) -> str | None:
    """Where a new run's checkpoints go: the given connection string, else `$TANDEM_CHECKPOINT_DB`,
    else None (SQLite in the run folder). Returned without its password."""
    text = given or os.environ.get(CHECKPOINT_DB_ENV)
    return public_location(text) if text else None


def recorded_location(folder: RunFolder) -> str | None:
    """Where a run's checkpoints live, as its `run.json` records it (None: SQLite in the folder)."""
    if not folder.run_json.exists():
        return None
    value = read_run_json(folder).get(CHECKPOINT_DB_KEY)
    return public_location(value) if isinstance(value, str) and value else None


def record(location: str | None) -> dict[str, Any]:
    """The `run.json` keys that say where a run's checkpoints live (`save_run_config(**record(...))`)."""
    return {CHECKPOINT_DB_KEY: location} if location else {}


def relocate(folder: RunFolder, given: str) -> str:
    """Record in `run.json` that a run's checkpoints are now found at `given` (a database moved
    to another host); the password is not written.

    Only a database that holds the run's thread is recorded: a wrong or unreachable one is
    refused in one line and `run.json` keeps the location it had. Recording it anyway made the
    run's checkpoints look lost, and `--force` then started the run again from scratch in the
    wrong database, over its delivered model. A run that never got past setup has nothing to
    lose, so it may be pointed at an empty database.
    """
    location = public_location(given)
    if location == recorded_location(folder):
        return location  # nothing moves: the given string only brings the password
    thread = recorded_run_id(read_run_json(folder), folder)
    if run_started(folder) and not has_thread(location, thread):
        where = recorded_location(folder) or f"{folder.checkpoints.name} in its folder"
        raise CheckpointDatabaseError(
            f"run {folder.run_id}: {location} does not hold its checkpoints (no thread {thread!r}), so it was not "
            f"recorded; run.json still says they are in {where}: give --checkpoint-db the database that holds them"
        )
    write_json(folder.run_json, {**read_run_json(folder), CHECKPOINT_DB_KEY: location})
    return location


def has_thread(location: str, thread_id: str) -> bool:
    """Whether the database at `location` holds checkpoints of thread `thread_id` (it is opened: an
    unreachable one is refused in one line). Only looked at: a database given by mistake is left
    as it was, without the checkpoint tables a run's first use creates."""
    with _cursor(location, set_up=False) as cur:
        cur.execute("SELECT to_regclass('checkpoints') IS NOT NULL AS present")
        return bool(cur.fetchone()["present"]) and _holds_checkpoints(cur, thread_id)


def _holds_checkpoints(cur: Any, thread_id: str) -> bool:
    cur.execute("SELECT 1 FROM checkpoints WHERE thread_id = %s LIMIT 1", (thread_id,))
    return cur.fetchone() is not None


def _password(location: str) -> str | None:
    if location not in _PASSWORDS and (env := os.environ.get(CHECKPOINT_DB_ENV)):
        with contextlib.suppress(CheckpointDatabaseError):
            public_location(env)  # remembers the environment's password under its own database
    return _PASSWORDS.get(location)


def connect(location: str, *, set_up: bool = True) -> psycopg.Connection[Any]:
    """A connection as `PostgresSaver` wants it (autocommit, no prepared statements, rows as dicts),
    with the tables set up once per process and database unless `set_up` is false; a refused
    connection is one line."""
    import psycopg  # the optional extra `postgres`
    from psycopg.rows import dict_row

    password = _password(location)
    options: dict[str, Any] = {"connect_timeout": 10} | ({"password": password} if password else {})
    try:
        conn = psycopg.connect(location, autocommit=True, prepare_threshold=0, row_factory=dict_row, **options)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointDatabaseError(
            f"cannot open the checkpoint database {location}: {reason} (the password comes from "
            f"--checkpoint-db, ${CHECKPOINT_DB_ENV}, $PGPASSWORD or ~/.pgpass)"
        ) from None
    if set_up and location not in _SET_UP:
        try:
            _saver(conn, None).setup()
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {CLAIMS_TABLE} (thread_id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                "claimed_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
        except BaseException:
            conn.close()
            raise
        _SET_UP.add(location)
    return conn


def _saver(conn: psycopg.Connection[Any], folder: RunFolder | None) -> PostgresSaver:
    from langgraph.checkpoint.postgres import PostgresSaver  # the optional extra `postgres`

    return PostgresSaver(conn, serde=DatabaseSerializer(folder) if folder is not None else None)  # type: ignore[arg-type]


class DatabaseSerializer(CheckpointSerializer):
    """tandem's allow-list serializer, naming the database (not a file of the folder) when it refuses a value."""

    def _refuse(self, what: str) -> UnsafeCheckpoint:
        return UnsafeCheckpoint(
            f"run {self.folder.run_id}: its checkpoint database holds {what}, which tandem never writes; "
            "refused to load it (open only databases and run folders from sources you trust)"
        )


def open_saver(folder: RunFolder, location: str | None = None, *, create: bool = True) -> BaseCheckpointSaver[Any]:
    """The checkpointer of a run: PostgreSQL at `location` (a connection string; default: where
    `run.json` says), else the run folder's SQLite file, which only a command that writes the run
    may `create` (`open_checkpointer`). Close it with `close_saver`."""
    location = public_location(location) if location else recorded_location(folder)
    if location is None:
        return open_checkpointer(folder, create=create)
    conn = connect(location)
    return _saver(conn, folder)


def close_saver(saver: BaseCheckpointSaver[Any]) -> None:
    """Close the connection a checkpointer from `open_saver` holds (SQLite or PostgreSQL alike)."""
    conn = getattr(saver, "conn", None)
    if conn is not None:
        conn.close()


@contextmanager
def _cursor(location: str, *, set_up: bool = True) -> Iterator[Any]:
    conn = connect(location, set_up=set_up)
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


CLAIMS_TABLE = "tandem_thread_claims"
"""Which run folder took each thread (`claim_thread`): a primary key, so two claims of one id never both win."""


def _owner(folder: RunFolder) -> str:
    """Who claims a thread: this machine's name and the run folder's path. A folder claims again
    what it claimed before (a kill between claim and first checkpoint); any other folder is refused."""
    return f"{socket.gethostname()}:{folder.path.resolve()}"


def _claim(cur: Any, location: str, thread_id: str, folder: RunFolder, *, reclaim: bool, instead: str) -> None:
    """Claim `thread_id` for `folder` inside the caller's transaction, or refuse in one line.

    The insert on the claims table's primary key is what makes the claim atomic: of two processes
    claiming one id at the same moment, the second waits for the first to commit and then finds
    the row taken (checking for checkpoints, then writing, let both through). A thread with
    checkpoints but no claim (a run older than the table) is taken too. `reclaim`: a thread this
    folder claimed before may already hold its checkpoints (an adoption a kill interrupted).
    """
    cur.execute(
        f"INSERT INTO {CLAIMS_TABLE} (thread_id, owner) VALUES (%s, %s) ON CONFLICT (thread_id) DO NOTHING",
        (thread_id, _owner(folder)),
    )
    fresh = ours = cur.rowcount == 1
    if not fresh:
        cur.execute(f"SELECT owner FROM {CLAIMS_TABLE} WHERE thread_id = %s", (thread_id,))
        row = cur.fetchone()
        ours = row is not None and row["owner"] == _owner(folder)
    if fresh or not reclaim:  # a thread nobody claimed yet, or a new run: it must have no checkpoints
        ours = ours and not _holds_checkpoints(cur, thread_id)
    if not ours:
        raise CheckpointDatabaseError(
            f"run id {thread_id!r} already has checkpoints in {location} (another run folder uses it); {instead}"
        )


def claim_thread(location: str | None, thread_id: str, folder: RunFolder) -> None:
    """Refuse a new run (or fork) whose id already has checkpoints in the database, or is claimed by
    another run folder: one database serves many run folders, and two runs on one thread would
    overwrite each other's history. Atomic: see `_claim`."""
    if location is None:
        return
    conn = connect(location)
    try:
        with conn.transaction(), conn.cursor() as cur:
            _claim(cur, location, thread_id, folder, reclaim=False, instead="pick another --run-id")
    finally:
        conn.close()


def release_thread(location: str | None, thread_id: str, folder: RunFolder) -> None:
    """Give back the claim of a run removed before it got past setup, so the id is free again (as in
    SQLite). Best effort: the run has already failed, and that failure is what the user must see."""
    if location is None:
        return
    with contextlib.suppress(Exception), _cursor(location) as cur:
        cur.execute(f"DELETE FROM {CLAIMS_TABLE} WHERE thread_id = %s AND owner = %s", (thread_id, _owner(folder)))


def copy_thread(location: str, old: str, new: str, folder: RunFolder) -> None:
    """Claim thread `new` for `folder` and copy every checkpoint of thread `old` to it, in one transaction.

    A run folder copied or renamed becomes a run of its own on its first resume
    (`persistence.adopt_copy`); in SQLite its file is its own, so the thread is renamed there. In
    PostgreSQL the original folder still reads thread `old`, so the copy gets a thread of its
    own instead, unless another folder has it already (two copies of one run given the same
    name in two runs folders): then it is refused and nothing is written. Rows already copied
    are kept, so a copy interrupted by a kill before `run.json` recorded it finishes next time.
    """
    tables = {
        "checkpoints": "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata",
        "checkpoint_blobs": "checkpoint_ns, channel, version, type, blob",
        "checkpoint_writes": "checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob",
    }
    conn = connect(location)
    try:
        with conn.transaction(), conn.cursor() as cur:
            _claim(cur, location, new, folder, reclaim=True, instead="pick another name for the copy")
            for table, columns in tables.items():
                cur.execute(
                    f"INSERT INTO {table} (thread_id, {columns}) SELECT %s, {columns} FROM {table} "
                    "WHERE thread_id = %s ON CONFLICT DO NOTHING",
                    (new, old),
                )
    finally:
        conn.close()


def adopt_copy_thread(folder: RunFolder) -> None:
    """Before `persistence.adopt_copy` renames a copied folder's run: give it its own thread in
    PostgreSQL (a copy of the original's), so resuming the copy never writes the original's."""
    location = recorded_location(folder)
    if location is None or not folder.run_json.exists():
        return
    old = recorded_run_id(read_run_json(folder), folder)
    if old != folder.run_id:
        copy_thread(location, old, folder.run_id, folder)
