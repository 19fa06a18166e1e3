"""Chat models for the LLM agents: built lazily, called safely, and never leaking the API key.

`ChatOpenAI` raises at construction without a key, so a model is built only when an LLM agent
acts, and `require_api_key` lets the entry points fail early with one line that names the
variable. The key is read from the environment by the OpenAI client itself: it never passes
through tandem's settings, state, files or messages, and `redact` scrubs it from any error text
a server might echo back.

Transient failures (HTTP 429, 5xx, time-outs, dropped connections) are retried by the OpenAI
client with exponential backoff and jitter, honouring `Retry-After`. What retries cannot fix
(a rejected key, an unknown model, a server still failing after the retries) raises
`ProviderStop`: the run stops with one line and stays resumable. Anything else a provider
raises (a reply that cannot be read) is the model misbehaving, which the agents treat as an
invalid answer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from tandem.tools.errors import ProviderStop as ProviderStop  # re-exported: the CLI catches it lightly

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")


class MissingAPIKey(ValueError):
    """No API key in the environment for an LLM agent that needs one."""


def api_key_present() -> bool:
    return bool(os.environ.get(API_KEY_ENV, "").strip())


def require_api_key(roles: Sequence[str]) -> None:
    """One line naming the variable when LLM roles need a key and the environment has none."""
    if roles and not api_key_present():
        who = " and ".join(f"the llm {r}" for r in roles)
        raise MissingAPIKey(
            f"{API_KEY_ENV} is not set, and {who} needs it: export {API_KEY_ENV}=... "
            "(for a local OpenAI-compatible server any non-empty value works)"
        )


def base_url(configured: str | None) -> str | None:
    """The server to talk to: the configured URL, else `$OPENAI_BASE_URL`, else OpenAI (None)."""
    return configured or os.environ.get(BASE_URL_ENV) or None


def openai_chat_model(
    model: str,
    *,
    url: str | None = None,
    temperature: float | None = None,
    timeout: float = 120.0,
    max_retries: int = 4,
) -> BaseChatModel:
    """A `ChatOpenAI` for any OpenAI-compatible server; the key comes from `$OPENAI_API_KEY`."""
    from langchain_openai import ChatOpenAI

    require_api_key(["agent"])
    kwargs: dict[str, Any] = {"model": model, "timeout": timeout, "max_retries": max_retries, "stream_usage": True}
    url = base_url(url)
    if url:
        kwargs["base_url"] = url
        kwargs["use_responses_api"] = False  # local servers speak chat completions only
    if temperature is not None:
        kwargs["temperature"] = temperature
    return ChatOpenAI(**kwargs)


def model_label(model: BaseChatModel) -> str:
    """A readable name for a chat model object (its model name, else its class)."""
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def invoke(model: Any, messages: list[BaseMessage]) -> AIMessage:
    """One chat call; failures retries cannot fix become `ProviderStop`, others propagate as they are."""
    try:
        reply = model.invoke(messages)
    except Exception as exc:
        stop = provider_stop(exc)
        if stop is not None:
            raise stop from None
        raise
    if not isinstance(reply, AIMessage):
        raise TypeError(f"the chat model returned {type(reply).__name__}, not a message")
    return reply


def provider_stop(exc: BaseException) -> ProviderStop | None:
    """The one-line stop for an error no retry fixes, or None when the error is the reply's fault."""
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on it
        return None
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        why = f"the chat server rejected the API key (HTTP {status}); check {API_KEY_ENV}"
    elif isinstance(exc, openai.NotFoundError):
        why = f"the chat server does not know this model or endpoint (HTTP {status}); check --model and --base-url"
    elif isinstance(exc, openai.RateLimitError | openai.InternalServerError):
        why = f"the chat server still answers HTTP {status} after the retries; try again later"
    elif isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        why = "the chat server did not answer (time-out or connection failure) after the retries"
    elif isinstance(exc, openai.APIStatusError):
        why = f"the chat server refused the request (HTTP {status}): {_first_line(exc)}"
    else:
        return None
    return ProviderStop(redact(why))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def redact(text: str) -> str:
    """The text with the API key (and anything shaped like a key) replaced by `***`."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if len(key) >= 4:
        text = text.replace(key, "***")
    return _KEY_LIKE.sub("sk-***", text)
