"""tandem's state machine and its public entry points.

`build_graph` returns the compiled LangGraph graph; `run_task` and `resume_run` drive a whole
run with a SQLite checkpointer in the run folder; `run_history` and `fork_run` travel in time.
Imported lazily, so `import graph.state` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "build_graph",
    "fork_run",
    "list_runs",
    "load_summary",
    "predict_csv",
    "resume_run",
    "run_history",
    "run_task",
]


def __getattr__(name: str) -> Any:
    if name == "build_graph":
        from graph.builder import build_graph

        return build_graph
    if name in __all__:
        from graph import api

        return getattr(api, name)
    raise AttributeError(f"module 'graph' has no attribute {name!r}")
