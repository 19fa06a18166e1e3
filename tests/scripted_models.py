"""Scripted models for the local server: competent, unfaithful and wasteful agents, reading tandem's prompts.

They read what a real model reads (the OpenAI-format messages) and answer as the prompts ask:
the Scientist with a proposal JSON, the Executor with a spec JSON. The competent Executor applies
the proposal's changes to the base spec with tandem's own `apply_changes`, as a careful engineer
would; the unfaithful one builds something else; the wasteful Scientist calls tools it does not
need and reports huge prompts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from openai_stub import ChatRequest, Reply, Say

from tandem.graph.messages import Proposal, apply_changes
from tandem.tools.spec import parse_spec

_EXPERIMENTS = re.compile(r"Experiments so far: (\d+)")


def step_of(request: ChatRequest) -> int:
    """Which Scientist step this is (1 = the first proposal after the baseline)."""
    match = _EXPERIMENTS.search(request.text("user"))
    return int(match.group(1)) if match else 1


def answered_tools(request: ChatRequest) -> int:
    """Tool results already in the conversation."""
    return sum(1 for m in request.messages if m["role"] == "tool")


def competent_scientist(plan: Sequence[dict[str, Any]], first_tool: tuple[str, dict[str, Any]] | None = None) -> Any:
    """Looks at the data once per step (optional), then plays `plan[step - 1]`; delivers when the plan ends."""

    def script(request: ChatRequest) -> Reply:
        if first_tool is not None and answered_tools(request) == 0:
            return Say(tool_calls=(first_tool,))
        step = step_of(request)
        if step > len(plan):
            return Say(json.dumps({"action": "deliver", "rationale": "the plan is done"}))
        return Say(json.dumps(plan[step - 1]))

    return script


def wasteful_scientist(plan: Sequence[dict[str, Any]], calls: int, usage: tuple[int, int]) -> Any:
    """Calls `profile_summary` `calls` times per step with a huge prompt each, then plays the plan."""

    def script(request: ChatRequest) -> Reply:
        if answered_tools(request) < calls:
            return Say(tool_calls=(("profile_summary", {"offset": 0}),), usage=usage)
        return Say(json.dumps(plan[min(step_of(request), len(plan)) - 1]), usage=usage)

    return script


def executor_prompt(request: ChatRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """The proposal and the base spec from the Executor's prompt."""
    text = request.text("user")
    proposal = text.split("\n", 1)[1].split("\n\nSpec of experiment #", 1)[0]
    spec = text.split("\n\nSpec of experiment #", 1)[1].split("\n", 1)[1].split("\n\nWrite the new spec", 1)[0]
    return json.loads(proposal), json.loads(spec)


def implemented(request: ChatRequest) -> dict[str, Any]:
    """The spec the proposal asks for, built faithfully."""
    proposal, base = executor_prompt(request)
    spec = apply_changes(parse_spec(base), Proposal.model_validate(proposal).changes, lambda i: parse_spec(base))
    return spec.model_dump(mode="json")


def faithful_executor(dry_run_first: bool = True) -> Any:
    """Dry-runs the faithful spec once, then answers with it."""

    def script(request: ChatRequest) -> Reply:
        spec = implemented(request)
        if dry_run_first and answered_tools(request) == 0:
            return Say(tool_calls=(("dry_run", {"spec": spec}),))
        return Say(json.dumps({"spec": spec, "repairs": [], "repaired_aspects": []}))

    return script


def unfaithful_executor(family: str, params: dict[str, Any] | None = None) -> Any:
    """Ignores the requested model: builds `family` instead, on the base spec's columns."""

    def script(request: ChatRequest) -> Reply:
        _, base = executor_prompt(request)
        base["model"] = {"family": family, "params": params or {}}
        return Say(json.dumps({"spec": base}))

    return script


LIGHTGBM = {
    "action": "experiment",
    "rationale": "Gradient boosting captures the interactions a linear model misses.",
    "move": "stronger_family",
    "changes": [
        {
            "change": "set_model",
            "family": "lightgbm",
            "params": {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 10},
        },
        {"change": "set_preprocessing", "settings": {"numeric_imputer": "none"}},
    ],
}
SLOWER_BOOSTING = {
    "action": "experiment",
    "rationale": "A slower learning rate with more trees usually generalises better.",
    "move": "boosting_schedule",
    "changes": [{"change": "set_params", "params": {"learning_rate": 0.03, "n_estimators": 300}}],
}
