"""Evaluator node: the environment trains and scores the candidate itself, on the fixed folds.

While the folds train, the node reports its progress on LangGraph's custom stream
(`{"event": "folds", "done": d, "total": k}`), which the live terminal view draws as a bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from tandem.graph.budget import candidate_seconds, timed
from tandem.graph.context import RunContext, context_of
from tandem.graph.messages import implementation_of, proposal_of
from tandem.graph.persistence import RunFolder, dev_data, dev_data_file, problem_of
from tandem.graph.state import EvaluationData, TandemState, TaskInfo
from tandem.tools.metrics import METRICS
from tandem.tools.spec import EnsembleSpec, PipelineSpec
from tandem.tools.training import CandidateResult, evaluate_spec
from tandem.tools.tuning import trial_pruner


def evaluate_candidate(
    spec: PipelineSpec | EnsembleSpec,
    task: TaskInfo,
    folder: RunFolder,
    context: RunContext,
    time_limit: float | None,
    prune: Callable[[int, float], bool] | None = None,
) -> CandidateResult:
    """Cross-validate a spec on the development folds (cached by spec hash in the run folder);
    `prune` stops a search trial early (tools/tuning.py: trial_pruner)."""
    X, y, folds = dev_data(task, folder)
    return evaluate_spec(
        spec,
        X,
        y,
        folds,
        problem_of(task),
        cache_dir=folder.cache,
        time_limit=time_limit,
        n_jobs=context.n_jobs,
        memory_limit=context.memory_limit,
        progress=fold_progress(),
        prune=prune,
        mapped_from=dev_data_file(task, folder),
    )


def evaluation_data(result: CandidateResult) -> EvaluationData:
    """A candidate's scores as the state stores them (a plain dict of the same fields)."""
    return cast(EvaluationData, result.to_dict())


def fold_progress() -> Callable[[int, int], None] | None:
    """A callback that puts fold progress on the graph's custom stream (None outside a graph run)."""
    try:
        write = get_stream_writer()
    except (KeyError, RuntimeError):  # called outside a running graph (tests, scripts)
        return None
    return lambda done, total: write({"event": "folds", "done": done, "total": total})


@timed
def evaluator(state: TandemState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Score the implemented spec; a missing or broken spec is a failed experiment, not a crash."""
    context = context_of(runtime)
    implementation = implementation_of(state)
    if implementation.spec is None:
        failed = CandidateResult(spec_hash="", status="failed", error=implementation.error or "no spec")
        return {"evaluation": evaluation_data(failed)}
    task, metric = state["task"], state["task"]["primary_metric"]
    proposal = proposal_of(state) if state.get("proposal") is not None else None
    prune = (
        trial_pruner(
            state["ledger"], proposal.move, proposal.base_experiment, metric, maximize=METRICS[metric].greater_is_better
        )
        if proposal is not None
        else None
    )
    result = evaluate_candidate(
        implementation.spec,
        task,
        RunFolder.of(state, context),
        context,
        time_limit=candidate_seconds(state, context),
        prune=prune,
    )
    return {"evaluation": evaluation_data(result)}
