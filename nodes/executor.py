"""Executor node: turn the current proposal into a complete, runnable spec."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from tandem.graph.budget import candidate_seconds, timed
from tandem.graph.context import RunContext, context_of
from tandem.graph.messages import Implementation, implementation_data, proposal_of, spec_resolver
from tandem.graph.persistence import RunFolder, dev_data, problem_of, profile_of
from tandem.graph.state import TandemState
from tandem.nodes.agents import ExecutorRequest, make_executor
from tandem.tools.training import dry_run, fold_training_rows


@timed
def executor(state: TandemState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Implement the proposal against its base experiment; the dry run is the Executor's own tool."""
    context = context_of(runtime)
    proposal = proposal_of(state)
    base_id = state["incumbent"] if proposal.base_experiment is None else proposal.base_experiment
    if proposal.failure is not None:  # nothing to implement: the Scientist's step failed
        failed = Implementation(error=f"no valid proposal: {proposal.failure}")
        return {"implementation": implementation_data(failed)}
    resolve = spec_resolver(state.get("ledger", []))
    try:
        base_spec = resolve(base_id)
    except ValueError as exc:
        return {"implementation": implementation_data(Implementation(error=str(exc)))}
    folder = RunFolder.of(state, context)
    X, y, folds = dev_data(state["task"], folder)
    problem = problem_of(state["task"])
    request = ExecutorRequest(
        task=state["task"],
        profile=profile_of(state, folder),
        proposal=proposal,
        base_spec=base_spec,
        resolve=resolve,
        columns=list(X.columns),
        try_spec=lambda spec: dry_run(
            spec,
            X,
            y,
            problem,
            time_limit=candidate_seconds(state, context),  # a dry run too stops when the budget does
            n_jobs=context.n_jobs,
            memory_limit=context.memory_limit,
            fold_rows=fold_training_rows(folds),
        ),
        rewards=context.rewards,
    )
    reply = make_executor(context).implement(request)
    return {
        "implementation": implementation_data(reply.value),
        "step_tokens": {**state.get("step_tokens", {}), "executor": reply.usage},
        "tokens": {"executor": reply.usage},
    }
