"""tandem: two cooperating agents improve a machine-learning model for your table.

The public Python API. `run_task` starts a run, `resume_run` continues one, `fork_run` and
`run_history` travel in its checkpoints, `predict_csv` uses the delivered model, and
`build_graph` returns the compiled LangGraph graph for callers who drive it themselves.
`TandemClassifier` and `TandemRegressor` are the same runs as scikit-learn estimators.

The package's layers live in folders of their own (see docs/architecture.md): `tandem.tools`
(capabilities), `tandem.graph` (the state machine), `tandem.nodes` (the nodes and agents), this
package's top modules (the entry points) and `tandem.benchmarks` (the benchmark and league).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tandem.api import (
        fork_run,
        list_runs,
        load_summary,
        predict_csv,
        resume_run,
        run_history,
        run_task,
    )
    from tandem.estimators import TandemClassifier, TandemRegressor
    from tandem.graph.assembly import build_graph
    from tandem.graph.context import RunContext

#: Where each public name lives. They are loaded on first use (PEP 562), not when the package is:
#: every `tandem.*` module runs this file first, and `tandem runs`, `show` and `--help` must start
#: without LangGraph, pandas and scikit-learn (docs/cli-startup.md).
_HOMES = {
    "RunContext": "tandem.graph.context",
    "build_graph": "tandem.graph.assembly",
    "TandemClassifier": "tandem.estimators",
    "TandemRegressor": "tandem.estimators",
    **dict.fromkeys(
        ("fork_run", "list_runs", "load_summary", "predict_csv", "resume_run", "run_history", "run_task"), "tandem.api"
    ),
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its home the first time it is asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module 'tandem' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


__all__ = [
    "RunContext",
    "TandemClassifier",
    "TandemRegressor",
    "build_graph",
    "fork_run",
    "list_runs",
    "load_summary",
    "predict_csv",
    "resume_run",
    "run_history",
    "run_task",
]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
