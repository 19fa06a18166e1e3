"""tandem: two cooperating agents improve a machine-learning model for your table.

The public Python API. `run_task` starts a run, `resume_run` continues one, `fork_run` and
`run_history` travel in its checkpoints, `predict_csv` uses the delivered model, and
`build_graph` returns the compiled LangGraph graph for callers who drive it themselves.

The package's layers live in folders of their own (see docs/architecture.md): `tandem.tools`
(capabilities), `tandem.graph` (the state machine), `tandem.nodes` (the nodes and agents), this
package's top modules (the entry points) and `tandem.benchmarks` (the benchmark and league).
"""

from tandem.api import (
    fork_run,
    list_runs,
    load_summary,
    predict_csv,
    resume_run,
    run_history,
    run_task,
)
from tandem.graph.assembly import build_graph
from tandem.graph.context import RunContext

__all__ = [
    "RunContext",
    "build_graph",
    "fork_run",
    "list_runs",
    "load_summary",
    "predict_csv",
    "resume_run",
    "run_history",
    "run_task",
]
