"""A process-wide request to stop, read by the fits that are running when a command is stopped.

Why: a run's nodes run in LangGraph's worker threads while the main thread streams the graph, so
Ctrl-C or SIGTERM reaches the main thread, which then waits for the running node to end. A node
cross-validating a candidate would go on fold after fold, and a fold whose worker process was
stopped along with the command fails: recorded as the candidate's outcome, a resumed run would
take that failure for a result. The command's signal handler (`tandem.stopping`) sets the
request; `tools.training.evaluate_spec` reads it, stops, and raises KeyboardInterrupt, so the
step ends unrecorded and a resume runs it again.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request_stop() -> None:
    """Ask every fit of this process to stop (called from a signal handler: it only sets a flag)."""
    _requested.set()


def clear_stop_request() -> None:
    _requested.clear()


def stop_requested() -> bool:
    return _requested.is_set()
