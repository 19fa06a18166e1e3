"""Reading tandem's prompts from inside a scripted chat model (tests/fake_chat.py), in process.

A scripted model sees the LangChain messages an LLM agent sends. These helpers read what a real
model would read there: which step the Scientist is at, and the proposal and base spec the
Executor is asked to implement, so a script can answer as a competent (or a deliberately
unfaithful) agent would.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import BaseMessage

from tandem.graph.messages import Proposal, apply_changes
from tandem.tools.spec import SpecError, parse_spec


def experiments_so_far(messages: list[BaseMessage]) -> int:
    """The number of experiments in the ledger when the Scientist was asked (1 at the first step)."""
    text = str(messages[1].content)
    return int(text.split("Experiments so far: ", 1)[1].split(" ", 1)[0])


def json_objects(text: str) -> list[Any]:
    """The top-level JSON objects in a prompt, in order."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at += 1
            continue
        found.append(value)
        at = end
    return found


def executor_task(messages: list[BaseMessage]) -> tuple[Proposal, dict[str, Any]]:
    """The proposal and the base experiment's spec in the Executor's prompt."""
    proposal, base = json_objects(str(messages[1].content))[:2]
    return Proposal.model_validate(proposal), base


def faithful_spec(messages: list[BaseMessage]) -> dict[str, Any]:
    """The spec the Executor was asked for, built as a careful engineer would (an ensemble by its member ids)."""
    proposal, base = executor_task(messages)
    first = proposal.changes[0] if proposal.changes else None
    if first is not None and first.change == "build_ensemble":
        return {"kind": "ensemble", "method": first.method, "member_ids": list(first.experiment_ids)}

    def no_members(experiment_id: int) -> Any:
        raise SpecError("only an ensemble refers to other experiments")

    return apply_changes(parse_spec(base), proposal.changes, no_members).model_dump(mode="json")
