"""Reward node: compare the candidate with the incumbent, pay both agents, append to the ledger.

This is the only node that writes the ledger after setup, once per experiment, so a resumed run
never duplicates an entry. The incumbent changes only when the candidate's mean CV score on the
primary metric is better (a near-tie on a discrete metric goes to the lower log-loss); rewards
follow the rules in `graph.reward_rules`. After each experiment it also rewrites `report.html`
from what the search has seen (`nodes.reports`), so a running or killed run has a report.
"""

from __future__ import annotations

from typing import Any, cast

from langgraph.runtime import Runtime

from tandem.graph.budget import budget_exhausted, timed
from tandem.graph.context import RunContext, context_of
from tandem.graph.messages import Implementation, implementation_data, proposal_of
from tandem.graph.persistence import RunFolder, write_jsonl
from tandem.graph.reward_rules import executor_reward, judge, scientist_reward, token_count
from tandem.graph.routing import review_required
from tandem.graph.state import ExperimentRecord, TandemState, TokenUsage, new_record
from tandem.nodes.evaluator import evaluation_data
from tandem.nodes.reports import write_progress_report
from tandem.nodes.verifier import verdict
from tandem.tools.training import CandidateResult

NO_TOKENS = TokenUsage(input=0, output=0)


def after_step(state: TandemState, record: ExperimentRecord) -> TandemState:
    """The state a budget is checked on after a step: its experiment in the ledger and the incumbent
    it leaves. Checked on the state before it, the time kept for delivery ignored the model just
    scored, even when it became the incumbent that delivery must refit."""
    return cast(
        TandemState,
        {
            **state,
            "iteration": record["iteration"],
            "ledger": [*state["ledger"], record],
            "incumbent": record["incumbent_after"],
        },
    )


@timed
def reward(state: TandemState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Judge the step: significance on paired folds, fidelity-scaled rewards, the new incumbent."""
    context = context_of(runtime)
    task, ledger = state["task"], state["ledger"]
    metric = task["primary_metric"]
    proposal = proposal_of(state)
    # a step that left nothing (only a state edited by hand can) reads as a failed, unfaithful one
    implementation = state.get("implementation") or implementation_data(Implementation())
    evaluation = state.get("evaluation") or evaluation_data(CandidateResult(spec_hash="", status="failed"))
    verification = state.get("verification") or verdict(0.0, [])
    experiment_id = len(ledger)
    incumbent = ledger[state["incumbent"]]
    ok = evaluation["status"] == "ok"
    # a search trial its pruner stopped is a verdict on the point, not a failure of the Executor
    failed = evaluation["status"] not in ("ok", "pruned")
    comparison = (
        judge(
            metric,
            evaluation["fold_scores"],
            incumbent["fold_scores"],
            context.rewards,
            folds_per_repeat=task["folds"],
        )
        if ok
        else None
    )
    step_tokens = state.get("step_tokens", {})
    fidelity = float(verification["fidelity"])
    events = [
        agent_reward(
            experiment_id,
            tokens=token_count(step_tokens.get(agent)),
            fidelity=fidelity,
            comparison=comparison,
            failed=failed,
            config=context.rewards,
            proposal_valid=verification["proposal_valid"],
        )
        for agent_reward, agent in ((scientist_reward, "scientist"), (executor_reward, "executor"))
    ]
    improved = comparison is not None and comparison.better  # a near-tie goes to the lower log-loss
    new_incumbent = experiment_id if improved else state["incumbent"]
    record = new_record(
        id=experiment_id,
        iteration=state.get("iteration", 0) + 1,
        base_experiment=proposal.base_experiment,
        move=proposal.move,
        proposal=proposal.summary(),
        rationale=proposal.rationale,
        changes=[c.model_dump(mode="json") for c in proposal.changes],
        spec=implementation["spec"],
        repairs=implementation["repairs"],
        evaluation=evaluation,
        primary_metric=metric,
        error=implementation["error"],
        gain=comparison.gain if comparison else None,
        significant=bool(comparison and comparison.significant),
        fidelity=fidelity,
        verification=verification["issues"],
        rewards={e["agent"]: e["total"] for e in events},
        tokens={agent: step_tokens.get(agent, NO_TOKENS) for agent in ("scientist", "executor")},
        incumbent_after=new_incumbent,
    )
    folder = RunFolder.of(state, context)
    write_jsonl(folder.experiments, [*ledger, record])
    write_jsonl(folder.rewards, [*state.get("reward_events", []), *events])
    stop_reason = budget_exhausted(after_step(state, record), context)
    waits = review_required(context.approve, delivering=stop_reason is not None)
    write_progress_report(
        folder,
        context,
        task,
        [*ledger, record],
        [*state.get("reward_events", []), *events],
        new_incumbent,
        now=waits,  # a person is about to look at it; a search that stops goes on to deliver's final page
    )
    return {
        "ledger": [record],
        "reward_events": events,
        "incumbent": new_incumbent,
        "iteration": record["iteration"],
        "stop_reason": stop_reason,
        "review_required": waits,
    }
