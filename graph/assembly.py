"""The state machine: setup → scientist → executor → evaluator → verifier → reward → scientist …

A `review` node (a human approval gate) sits beside the loop; routing visits it only when the
run context asks for approval, so the default loop never pauses.

`build_graph(checkpointer=...)` is for Python users, unrestricted: a Python caller is the user.
The module-level `graph` (no checkpointer) is what `tandem graph` draws. LangGraph Studio's server
serves `tandem.studio:graph` instead: the same nodes with a context whose paths, endpoint and
models come from the server's environment, never from a request (see app/studio.py).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from tandem.graph.context import RunContext
from tandem.graph.routing import after_review, after_reward, after_scientist
from tandem.graph.state import TandemState, TaskRequest
from tandem.nodes.deliver import deliver
from tandem.nodes.evaluator import evaluator
from tandem.nodes.executor import executor
from tandem.nodes.review import review
from tandem.nodes.reward import reward
from tandem.nodes.scientist import scientist
from tandem.nodes.setup import setup
from tandem.nodes.verifier import verifier

TandemGraph = CompiledStateGraph[TandemState, RunContext, TaskRequest, TandemState]


def build_graph(checkpointer: Any = None, context_schema: type[RunContext] = RunContext) -> TandemGraph:
    """The compiled tandem graph; pass a checkpointer to make runs resumable.

    `context_schema` is what a dict context is coerced into: a subclass of `RunContext` that fixes
    some fields (as the Studio server's does) narrows what a caller may choose.
    """
    builder = StateGraph(TandemState, context_schema=context_schema, input_schema=TaskRequest)
    builder.add_node("setup", setup)
    builder.add_node("scientist", scientist)
    builder.add_node("executor", executor)
    builder.add_node("evaluator", evaluator)
    builder.add_node("verifier", verifier)
    builder.add_node("reward", reward)
    builder.add_node("review", review)
    builder.add_node("deliver", deliver)
    builder.add_edge(START, "setup")
    builder.add_edge("setup", "scientist")
    builder.add_conditional_edges("scientist", after_scientist)
    builder.add_edge("executor", "evaluator")
    builder.add_edge("evaluator", "verifier")
    builder.add_edge("verifier", "reward")
    builder.add_conditional_edges("reward", after_reward)
    builder.add_conditional_edges("review", after_review)
    builder.add_edge("deliver", END)
    return builder.compile(checkpointer=checkpointer, name="tandem")


graph = build_graph()
