"""The two roles and their kinds: pick an agent for each role from the run context."""

from __future__ import annotations

from graph.context import RunContext
from nodes.agents.base import AgentReply, ExecutorAgent, ExecutorRequest, ScientistAgent, ScientistView
from nodes.agents.heuristic_executor import HeuristicExecutor
from nodes.agents.heuristic_scientist import DEFAULT_PREFERENCES, HeuristicScientist


def make_scientist(context: RunContext) -> ScientistAgent:
    """The Scientist the context asks for."""
    return HeuristicScientist()


def make_executor(context: RunContext) -> ExecutorAgent:
    """The Executor the context asks for."""
    return HeuristicExecutor()


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
