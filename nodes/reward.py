"""Reward node: compare the candidate with the incumbent, pay both agents, append to the ledger.

This is the only node that writes the ledger after setup, once per experiment, so a resumed run
never duplicates an entry. The incumbent changes only when the candidate's mean CV score on the
primary metric is better; rewards follow the rules in `graph.rewards`.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from tandem.graph.budget import budget_exhausted, timed
from tandem.graph.context import RunContext, context_of
from tandem.graph.messages import Proposal
from tandem.graph.persistence import RunFolder, write_jsonl
from tandem.graph.reward_rules import compare, executor_reward, scientist_reward, token_count
from tandem.graph.routing import review_required
from tandem.graph.state import ExperimentRecord, TandemState, TokenUsage

NO_TOKENS = TokenUsage(input=0, output=0)


@timed
def reward(state: TandemState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Judge the step: significance on paired folds, fidelity-scaled rewards, the new incumbent."""
    context = context_of(runtime)
    task, ledger = state["task"], state["ledger"]
    metric = task["primary_metric"]
    proposal = Proposal.model_validate(state["proposal"])
    implementation = state["implementation"] or {}
    evaluation = state["evaluation"] or {}
    verification = state["verification"] or {}
    experiment_id = len(ledger)
    incumbent = ledger[state["incumbent"]]
    ok = evaluation.get("status") == "ok"
    comparison = (
        compare(metric, evaluation["fold_scores"][metric], incumbent["fold_scores"][metric], context.rewards)
        if ok
        else None
    )
    step_tokens = state.get("step_tokens", {})
    common = {
        "fidelity": float(verification.get("fidelity", 0.0)),
        "comparison": comparison,
        "failed": not ok,
        "config": context.rewards,
        "proposal_valid": bool(verification.get("proposal_valid", True)),
    }
    events = [
        scientist_reward(experiment_id, tokens=token_count(step_tokens.get("scientist")), **common),  # type: ignore[arg-type]
        executor_reward(experiment_id, tokens=token_count(step_tokens.get("executor")), **common),  # type: ignore[arg-type]
    ]
    improved = comparison is not None and comparison.gain > 0
    new_incumbent = experiment_id if improved else state["incumbent"]
    record = ExperimentRecord(
        id=experiment_id,
        iteration=state.get("iteration", 0) + 1,
        base_experiment=proposal.base_experiment,
        move=proposal.move,
        proposal=proposal.summary(),
        rationale=proposal.rationale,
        changes=[c.model_dump(mode="json") for c in proposal.changes],
        spec=implementation.get("spec"),
        spec_hash=evaluation.get("spec_hash") or None,
        repairs=list(implementation.get("repairs", [])),
        status=evaluation.get("status", "failed"),
        error=evaluation.get("error") or implementation.get("error"),
        cv=evaluation.get("cv", {}),
        cv_std=evaluation.get("cv_std", {}),
        fold_scores=evaluation.get("fold_scores", {}),
        primary=evaluation.get("cv", {}).get(metric),
        gain=comparison.gain if comparison else None,
        significant=bool(comparison and comparison.significant),
        fidelity=common["fidelity"],  # type: ignore[typeddict-item]
        verification=list(verification.get("issues", [])),
        rewards={e["agent"]: e["total"] for e in events},
        tokens={agent: step_tokens.get(agent, NO_TOKENS) for agent in ("scientist", "executor")},
        fit_seconds=float(evaluation.get("fit_seconds", 0.0)),
        incumbent_after=new_incumbent,
    )
    folder = RunFolder.of(state)
    write_jsonl(folder.experiments, [*ledger, record])
    write_jsonl(folder.rewards, [*state.get("reward_events", []), *events])
    spent = {**state, "iteration": record["iteration"]}
    stop_reason = budget_exhausted(spent, context)  # type: ignore[arg-type]
    return {
        "ledger": [record],
        "reward_events": events,
        "incumbent": new_incumbent,
        "iteration": record["iteration"],
        "stop_reason": stop_reason,
        "review_required": review_required(context.approve, delivering=stop_reason is not None),
    }
