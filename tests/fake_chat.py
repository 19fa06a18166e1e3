"""A scripted chat model for unit tests: LangChain's fake model, taught to bind tools and to record calls.

LangChain's fake chat models do not implement `bind_tools`; this one accepts the tools, keeps them
for inspection, and answers from a list of replies or from a function of the conversation, so a
test can play a competent, a wasteful or a broken model without a network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

Reply = AIMessage | str
Script = Callable[[list[BaseMessage]], Reply]


class ScriptedChatModel(GenericFakeChatModel):
    """Replies in order (or from `script`); `calls` holds every conversation it was sent."""

    messages: Iterator[Reply] = Field(default_factory=lambda: iter(()))
    script: Script | None = None
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    tools: list[Any] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        self.tools = list(tools)
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.calls.append(list(messages))
        reply = self.script(messages) if self.script is not None else next(self.messages)
        message = AIMessage(content=reply) if isinstance(reply, str) else reply
        return ChatResult(generations=[ChatGeneration(message=message)])

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]


def tool_call(
    name: str, args: dict[str, Any], call_id: str = "call_1", usage: tuple[int, int] | None = None
) -> AIMessage:
    """An assistant message that calls one tool."""
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}], **_usage(usage)
    )


def answer(payload: dict[str, Any] | str, usage: tuple[int, int] | None = None) -> AIMessage:
    """An assistant message whose content is the JSON answer (or any text)."""
    content = payload if isinstance(payload, str) else json.dumps(payload)
    return AIMessage(content=content, **_usage(usage))


def _usage(usage: tuple[int, int] | None) -> dict[str, Any]:
    if usage is None:
        return {}
    return {"usage_metadata": {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": sum(usage)}}
