"""Which chat model drives each LLM role: one handed in from Python, else `ChatOpenAI` from the run context.

Model objects cannot go into `run.json` or a checkpoint, so they travel in the run context's
transient `chat_models` field, and `python_models` (which is stored) remembers which roles had
one: resuming such a run needs the object again, and says so in one line instead of quietly
switching to another model. Models named in the context are built only when an agent acts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tandem.graph.context import ROLES, Role, RunContext
from tandem.tools.chat import (
    BASE_URL_ENV,
    MissingAPIKey,
    base_url,
    model_label,
    openai_chat_model,
    require_api_key,
)
from tandem.tools.data import InputError
from tandem.tools.tokens import Price, cost_of


def llm_roles(context: RunContext) -> list[Role]:
    return [role for role in ROLES if context.kind(role) == "llm"]


def given_model(context: RunContext, role: Role) -> Any | None:
    """The chat model object handed in for a role (plain data, as a JSON config could pass, is ignored)."""
    model = (context.chat_models or {}).get(role)
    return model if hasattr(model, "invoke") else None


def check_llm_setup(context: RunContext, roles: list[Role] | None = None) -> None:
    """Fail early, in one line, when an LLM role has no way to get its chat model."""
    roles = llm_roles(context) if roles is None else roles
    for role in roles:
        if role in context.python_models and given_model(context, role) is None:
            raise InputError(
                f"the {role} of this run used a chat model handed in from Python; "
                f"pass it again, e.g. resume_run(run_id, {role}_model=model)"
            )
    built = [role for role in roles if given_model(context, role) is None]
    url = base_url(context.base_url) if built else None
    if url and not url.lower().startswith(("http://", "https://")):
        # Refused here, before a run folder is made: otherwise the baseline trained first and only
        # then "the chat server did not answer" said something was wrong.
        given = "--base-url" if context.base_url else f"${BASE_URL_ENV}"
        raise InputError(f"{given} {url!r} is not a server address: start it with http:// or https://")
    try:
        require_api_key(built)
    except MissingAPIKey as exc:
        raise InputError(str(exc)) from None


def chat_model_for(context: RunContext, role: Role) -> Any:
    """The chat model of a role: the object handed in, else a `ChatOpenAI` built now."""
    given = given_model(context, role)
    if given is not None:
        return given
    check_llm_setup(context, [role])
    return openai_chat_model(
        context.model_name(role),
        url=context.base_url,
        temperature=context.temperature,
        timeout=context.request_timeout,
        max_retries=context.max_retries,
    )


def with_chat_models(context: RunContext, *, scientist: Any = None, executor: Any = None) -> RunContext:
    """The context with chat model objects for some roles; those roles become LLM agents."""
    handed = {role: model for role, model in (("scientist", scientist), ("executor", executor)) if model is not None}
    if not handed:
        return context
    changes: dict[str, Any] = {}
    for role, model in handed.items():
        changes[role] = "llm"
        changes[f"{role}_model"] = model_label(model)
    return replace(
        context,
        chat_models={**(context.chat_models or {}), **handed},
        python_models=tuple(sorted({*context.python_models, *handed})),
        **changes,
    )


def agents_summary(context: RunContext, tokens: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Who played each role (kind and model) and, given a price table, what each role's tokens cost in $."""
    agents = {
        role: {"kind": context.kind(role), "model": context.model_name(role) if context.kind(role) == "llm" else None}
        for role in ROLES
    }
    out: dict[str, Any] = {"agents": agents, "policy": {"name": context.policy, "hash": context.policy_hash}}
    if context.prices:
        cost: dict[str, float | None] = {}
        for role in ROLES:
            price = price_of(context.prices, agents[role]["model"])
            usage = tokens.get(role, {})
            cost[role] = cost_of(usage, price) if price else (0.0 if not any(usage.values()) else None)
        known = [c for c in cost.values() if c is not None]
        cost["total"] = round(sum(known), 6) if len(known) == len(ROLES) else None
        out["cost_usd"] = cost
    return out


def price_of(prices: dict[str, Any], model: str | None) -> Price | None:
    """The price of a model: its own entry, else the longest entry its name starts with (dated versions)."""
    if not model:
        return None
    if model in prices:
        return Price(input=float(prices[model]["input"]), output=float(prices[model]["output"]))
    prefixes = sorted((name for name in prices if model.startswith(name)), key=len, reverse=True)
    return price_of(prices, prefixes[0]) if prefixes else None
