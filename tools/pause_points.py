"""A test hook: stop the process at a named point so a crash test can kill it exactly there.

Crash-safety tests (tests/test_resume.py, tests/test_timetravel.py) must show that a SIGKILL
*inside* a fold fit, *inside* a checkpoint write or *inside* delivery resumes to the same run.
Polling the run folder from outside only lands somewhere after a file appears; this hook makes
the landing certain. It is off unless the environment asks for it, and then costs one lookup
in `os.environ` per call:

    TANDEM_TEST_PAUSE_AT=fold_fit@12        (a point name, optionally @N: the N-th time it is reached)
    TANDEM_TEST_PAUSE_MARKER=/tmp/x.json    (written atomically when the point is reached)

On the N-th call (counted per process) of `pause_point(name)` the process writes the marker
(`{"point", "hit", "pid"}`) and sleeps for `PAUSE_SECONDS`, long enough for the test to see the
marker, check the process is alive and kill it. The points are:

- `fold_fit`: in `tools.training._fit_fold`, after one fold's model is fitted, before it is scored;
- `checkpoint_write`: in the run's SQLite connection, after a checkpoint's rows are inserted and
  before they are committed (`CommitPause`, the connection class `graph.persistence` opens);
- `delivery`: in `nodes.deliver`, after the model file is written and before the summary is.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from pathlib import Path

PAUSE_AT = "TANDEM_TEST_PAUSE_AT"
PAUSE_MARKER = "TANDEM_TEST_PAUSE_MARKER"
PAUSE_SECONDS = 600.0
_hits: Counter[str] = Counter()


def pause_point(name: str) -> None:
    """Pause here if `$TANDEM_TEST_PAUSE_AT` names this point (and this is its N-th hit)."""
    wanted = os.environ.get(PAUSE_AT)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] != int(nth or 1):
        return
    marker = Path(os.environ[PAUSE_MARKER])
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"point": name, "hit": _hits[name], "pid": os.getpid()}))
    tmp.replace(marker)
    time.sleep(PAUSE_SECONDS)


class CommitPause(sqlite3.Connection):
    """A SQLite connection whose commits pass the `checkpoint_write` pause point first.

    The checkpointer inserts a checkpoint's rows and then commits, so a pause here is inside the
    write: the rows are in an open transaction that a kill leaves uncommitted.
    """

    def commit(self) -> None:
        pause_point("checkpoint_write")
        super().commit()
