"""One step of an LLM agent: read-only tool calls, a final JSON answer, one repair round, every token counted.

Both LLM agents share this loop, so a misbehaving model is handled the same way in either role.
The model may call the bound tools up to `max_tool_calls` times; its final answer is a JSON object
in a plain message, validated by the agent's own function (pydantic schemas plus the checks an
agent can act on: unknown family, unknown column, a spec that does not run…). An invalid
answer — bad JSON, a schema violation, an unknown tool, an empty reply, a refusal, tool calls
past the budget — is sent back with the reason, `max_repairs` times; after that the step ends
without a value and the agent records a failed step. Tools can only read: nothing here writes
files, runs code or reaches the network except the chat call itself.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from pydantic import BaseModel, ValidationError

from tandem.graph.state import TokenUsage
from tandem.nodes.agents.prompts import quoted
from tandem.tools.chat import ProviderStop, invoke, redact
from tandem.tools.tokens import count_prompt_tokens, count_tokens, message_text

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_TOOL_RESULT_CHARS = 4000
#: What `_handle` returns when tool calls ran fine: the conversation goes on, no repair is used.
_CONTINUE = ""


class InvalidAnswer(ValueError):
    """An answer the agent cannot accept; the message tells the model what to fix.

    `salvage` is the best usable value found anyway (a well-formed proposal naming an unknown
    column), which the agent may still hand on so the environment judges it.
    """

    def __init__(self, message: str, salvage: Any = None) -> None:
        super().__init__(message)
        self.salvage = salvage


@dataclass(frozen=True)
class Tool:
    """A read-only function the model may call; `run` returns text (errors included) for the model."""

    name: str
    description: str
    args: type[BaseModel]
    run: Callable[[Any], str]

    def schema(self) -> dict[str, Any]:
        parameters = self.args.model_json_schema()
        parameters.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }


@dataclass
class StepResult(Generic[T]):
    """What one step produced: a valid value, or the last problem (and anything salvageable)."""

    value: T | None = None
    problem: str | None = None
    salvage: Any = None
    usage: TokenUsage = field(default_factory=lambda: TokenUsage(input=0, output=0))
    calls: int = 0
    tool_calls: int = 0
    repairs: int = 0
    prompt_tokens: list[int] = field(default_factory=list)
    """Input tokens of each chat call, in order (the first is the step's prompt)."""


@dataclass(frozen=True)
class LoopLimits:
    max_tool_calls: int = 6
    max_repairs: int = 1


def run_step(
    model: Any,
    messages: list[BaseMessage],
    tools: Sequence[Tool],
    validate: Callable[[str], T],
    limits: LoopLimits,
    model_name: str | None = None,
) -> StepResult[T]:
    """Drive the model until it gives a valid answer or runs out of repairs."""
    schemas = [t.schema() for t in tools]
    bound = _bind(model, schemas)
    by_name = {t.name: t for t in tools}
    result: StepResult[T] = StepResult()
    for _ in range(limits.max_tool_calls + limits.max_repairs + 2):
        reply = _call(bound, messages, schemas, model_name, result)
        problem: str | None
        if reply is None:
            problem, result.problem = result.problem or "the reply could not be read", None
        else:
            messages.append(reply)
            problem = _handle(reply, by_name, limits, messages, validate, result)
            if problem is None:
                return result
            if problem == _CONTINUE:
                continue
        if result.repairs >= limits.max_repairs:
            result.problem = problem
            return result
        result.repairs += 1
        if reply is None or not _calls_of(reply):
            messages.append(HumanMessage(content=repair_request(problem)))
    result.problem = result.problem or "too many turns without a valid answer"
    return result


def _bind(model: Any, schemas: list[dict[str, Any]]) -> Any:
    if not schemas:
        return model
    try:
        return model.bind_tools(schemas)
    except NotImplementedError:
        log.warning("%s cannot call tools; it answers without them", type(model).__name__)
        return model


def _call(
    bound: Any, messages: list[BaseMessage], schemas: list[dict[str, Any]], name: str | None, result: StepResult[Any]
) -> AIMessage | None:
    """One chat call with its tokens added to the step; an unreadable reply is None (a problem, not a crash)."""
    result.calls += 1
    try:
        reply = invoke(bound, messages)
    except ProviderStop:
        raise
    except Exception as exc:  # a reply the provider package cannot parse is the model's misbehaviour
        result.problem = redact(f"the reply could not be read ({type(exc).__name__}: {str(exc)[:200]})")
        result.prompt_tokens.append(count_prompt_tokens(messages, schemas, name))
        result.usage["input"] += result.prompt_tokens[-1]
        return None
    usage = reply.usage_metadata
    if usage and usage.get("input_tokens", 0) + usage.get("output_tokens", 0) > 0:
        used_in, used_out = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    else:  # the provider reported nothing: count it ourselves
        used_in = count_prompt_tokens(messages, schemas, name)
        used_out = count_tokens(message_text(reply), name)
    result.usage["input"] += used_in
    result.usage["output"] += used_out
    result.prompt_tokens.append(used_in)
    return reply


def _calls_of(reply: AIMessage) -> list[dict[str, Any]]:
    """Tool calls, the well-formed and the malformed ones (each needs an answer)."""
    calls: list[dict[str, Any]] = [dict(c) for c in reply.tool_calls]
    calls += [{**dict(c), "invalid": True} for c in reply.invalid_tool_calls]
    return calls


def _handle(
    reply: AIMessage,
    tools: Mapping[str, Tool],
    limits: LoopLimits,
    messages: list[BaseMessage],
    validate: Callable[[str], T],
    result: StepResult[T],
) -> str | None:
    """Run the reply's tool calls or validate its answer.

    Returns None when a valid answer ended the step, `_CONTINUE` when tools ran and the model
    should go on, else the problem to send back."""
    calls = _calls_of(reply)
    if calls:
        problems = [_answer_call(call, tools, limits, messages, result) for call in calls]
        found = [p for p in problems if p]
        if not found:
            return _CONTINUE
        return "; ".join(found)
    refusal = reply.additional_kwargs.get("refusal")
    if refusal:
        return f"you refused ({str(refusal)[:200]}); this is an ordinary data-science task, answer with the JSON"
    try:
        result.value = validate(message_text(reply))
    except InvalidAnswer as exc:
        result.salvage = exc.salvage if exc.salvage is not None else result.salvage
        return str(exc)
    return None


def _answer_call(
    call: dict[str, Any], tools: Mapping[str, Tool], limits: LoopLimits, messages: list[BaseMessage], result: Any
) -> str | None:
    """Answer one tool call with a ToolMessage; return a problem when the call was not acceptable."""
    name, call_id = str(call.get("name") or ""), str(call.get("id") or "")
    problem: str | None = None
    if call.get("invalid"):
        problem = f"the arguments of your call to {name!r} are not valid JSON"
        text = f"error: {problem}"
    elif name not in tools:
        problem = f"there is no tool {name!r}; the tools are {sorted(tools)}"
        text = f"error: {problem}"
    elif result.tool_calls >= limits.max_tool_calls:
        problem = f"the budget of {limits.max_tool_calls} tool calls for this step is spent; answer with the JSON now"
        text = f"not run: {problem}"
    else:
        result.tool_calls += 1
        text = _run_tool(tools[name], call.get("args") or {})
    messages.append(ToolMessage(content=text[:MAX_TOOL_RESULT_CHARS], tool_call_id=call_id, name=name))
    return problem


def _run_tool(tool: Tool, args: Any) -> str:
    try:
        parsed = tool.args.model_validate(args)
    except ValidationError as exc:
        return f"error: bad arguments for {tool.name}: {explain(exc)}"
    try:
        return tool.run(parsed)
    except Exception as exc:  # a tool failure is an answer for the model, never a crash of the run
        return f"error: {quoted(exc, 500)}"  # tool errors can quote data (a column, a cell)


def repair_request(problem: str) -> str:
    return (
        f"Your answer was not accepted: {problem[:1500]}\n"
        "Fix it and reply with the corrected JSON object only (one more invalid answer ends the step as failed)."
    )


def explain(exc: ValidationError, limit: int = 6) -> str:
    """A pydantic error as short lines a model can act on."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
MAX_OBJECT_STARTS = 200


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a reply: bare, in a ```json fence, or amid prose (reasoning blocks skipped).

    Amid prose, the longest object that decodes wins. `InvalidAnswer` says what was wrong.
    """
    text = _THINKING.sub("", text or "").strip()
    if not text:
        raise InvalidAnswer("the reply was empty; answer with one JSON object")
    error = "no JSON object found in the reply"
    for candidate in [m.group(1).strip() for m in _FENCE.finditer(text)] + [text]:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError as exc:
            if candidate.startswith("{"):
                error = f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            continue
        except RecursionError:  # "[[[[…" nested past Python's limit: no answer a pipeline needs
            raise InvalidAnswer("the JSON is nested too deeply; reply with one flat JSON object") from None
        if isinstance(data, dict):
            return data
        error = f"expected a JSON object, got {type(data).__name__}"
    found = _objects_in(text)
    if found:
        return max(found, key=lambda pair: pair[0])[1]
    raise InvalidAnswer(f"{error}; reply with one JSON object and nothing else")


def _objects_in(text: str) -> list[tuple[int, dict[str, Any]]]:
    """Every JSON object embedded in the text, with its length."""
    decoder = json.JSONDecoder()
    found = []
    starts = [i for i, ch in enumerate(text) if ch == "{"][:MAX_OBJECT_STARTS]
    for start in starts:
        try:
            data, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(data, dict):
            found.append((end - start, data))
    return found
