"""The two roles and their kinds: pick an agent for each role from the run context."""

from __future__ import annotations

from graph.context import RunContext
from nodes.agents.base import AgentReply, ExecutorAgent, ExecutorRequest, ScientistAgent, ScientistView
from nodes.agents.heuristic_executor import HeuristicExecutor
from nodes.agents.heuristic_scientist import DEFAULT_PREFERENCES, HeuristicScientist
from nodes.agents.llm_loop import LoopLimits


def make_scientist(context: RunContext) -> ScientistAgent:
    """The Scientist the context asks for (an LLM one builds its chat model now, not before)."""
    if context.scientist == "llm":
        from nodes.agents.llm_scientist import LLMScientist
        from nodes.agents.models import chat_model_for

        return LLMScientist(chat_model_for(context, "scientist"), _limits(context), context.model_name("scientist"))
    return HeuristicScientist()


def make_executor(context: RunContext) -> ExecutorAgent:
    """The Executor the context asks for."""
    if context.executor == "llm":
        from nodes.agents.llm_executor import LLMExecutor
        from nodes.agents.models import chat_model_for

        return LLMExecutor(chat_model_for(context, "executor"), _limits(context), context.model_name("executor"))
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
    "ScientistAgent",
    "ScientistView",
    "make_executor",
    "make_scientist",
]
