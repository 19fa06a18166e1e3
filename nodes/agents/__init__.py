"""The two roles and their kinds: pick an agent for each role from the run context."""

from __future__ import annotations

from typing import Any

from tandem.graph.context import RunContext
from tandem.nodes.agents.base import AgentReply, ExecutorAgent, ExecutorRequest, ScientistAgent, ScientistView
from tandem.nodes.agents.heuristic_executor import HeuristicExecutor
from tandem.nodes.agents.heuristic_scientist import DEFAULT_PREFERENCES, HeuristicScientist
from tandem.nodes.agents.learned_executor import LearnedFilling
from tandem.nodes.agents.learned_scientist import LearnedScientist
from tandem.nodes.agents.llm_executor import LLMExecutor
from tandem.nodes.agents.llm_loop import LoopLimits
from tandem.nodes.agents.llm_scientist import LLMScientist
from tandem.nodes.agents.models import chat_model_for, check_llm_setup
from tandem.tools.data import InputError
from tandem.tools.policy_file import PLAYBOOK, read_policy


def make_scientist(context: RunContext) -> ScientistAgent:
    """The Scientist the context asks for (an LLM one builds its chat model now, not before)."""
    if context.scientist == "llm":
        policy = frozen_policy(context) if context.policy != PLAYBOOK else None  # advice in its prompt
        return LLMScientist(
            chat_model_for(context, "scientist"), _limits(context), context.model_name("scientist"), policy
        )
    if context.policy != PLAYBOOK:
        return LearnedScientist(frozen_policy(context))
    return HeuristicScientist()


def frozen_policy(context: RunContext) -> dict[str, Any]:
    """The run's policy file, refused when its content is no longer what the run started with."""
    policy = read_policy(context.policy)
    if context.policy_hash is not None and policy["hash"] != context.policy_hash:
        raise InputError(
            f"policy file {context.policy} changed since this run started (hash {policy['hash'][:12]}, "
            f"run.json has {context.policy_hash[:12]}): put the original back, or fork with --policy"
        )
    return policy


def playable(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy, once the agents that play it accept it (role, features and their statistics,
    arms, mode, seed, settings); else the `InputError` they raise. The checks live in the agents,
    next to what they guard; this makes them all at once, for whoever must refuse a file early."""
    LearnedScientist(policy)
    LearnedFilling(policy)
    return policy


def check_agents(context: RunContext) -> None:
    """Fail early, in one line, when the run's agents could not be made: an LLM role with no way to
    get its chat model, or a policy file they could not play (or one changed since the run
    started). Called before a run folder is made or a baseline trained: the agents themselves are
    made only after setup, where a bad file would stop the run with its baseline done."""
    check_llm_setup(context)
    if context.policy != PLAYBOOK:
        playable(frozen_policy(context))


def make_executor(context: RunContext) -> ExecutorAgent:
    """The Executor the context asks for."""
    if context.executor == "llm":
        return LLMExecutor(chat_model_for(context, "executor"), _limits(context), context.model_name("executor"))
    if context.policy != PLAYBOOK:  # the policy file's Executor part fills the open choices
        return HeuristicExecutor(filling=LearnedFilling(frozen_policy(context)))
    return HeuristicExecutor()


def _limits(context: RunContext) -> LoopLimits:
    return LoopLimits(max_tool_calls=context.max_tool_calls, max_repairs=context.max_repairs)


__all__ = [
    "DEFAULT_PREFERENCES",
    "AgentReply",
    "ExecutorAgent",
    "ExecutorRequest",
    "HeuristicExecutor",
    "HeuristicScientist",
    "LearnedScientist",
    "ScientistAgent",
    "ScientistView",
    "check_agents",
    "frozen_policy",
    "make_executor",
    "make_scientist",
    "playable",
]
