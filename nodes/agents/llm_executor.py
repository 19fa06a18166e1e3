"""The LLM Executor: a chat model writes the complete spec for a proposal and checks that it runs.

Same interface as the offline Executor: an `ExecutorRequest` in, an `Implementation` out, with
the tokens spent. The model gets the proposal, the base experiment's spec and the catalogue; its
one tool is the dry run (fit on a small sample, return the error). Its answer must be a spec the
environment can build and that runs; when it is not, the reason goes back once. The prompt does
not force faithfulness: the model is free to deviate, and the verifier, not this module,
decides whether it did what was asked.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationError

from tandem.graph.messages import Implementation, apply_changes
from tandem.nodes.agents import prompts
from tandem.nodes.agents.base import AgentReply, ExecutorRequest
from tandem.nodes.agents.llm_loop import (
    InvalidAnswer,
    LoopLimits,
    StepResult,
    Tool,
    explain,
    parse_json_object,
    run_step,
)
from tandem.tools.spec import EnsembleSpec, PipelineSpec, SpecError, check_against_data, parse_spec


class DryRunArgs(BaseModel):
    spec: dict[str, Any] = Field(description="the complete spec to try")


class SpecChecker:
    """Turns the model's spec JSON into a checked spec, and remembers which specs already ran."""

    def __init__(self, request: ExecutorRequest, names: prompts.ColumnNames) -> None:
        self.request = request
        self.names = names
        self.ran: dict[str, str | None] = {}

    def spec(self, data: Any) -> PipelineSpec | EnsembleSpec:
        """Validate a spec (members of an ensemble filled in from `member_ids`); SpecError says why not."""
        if not isinstance(data, dict):
            raise SpecError("the spec must be a JSON object")
        data = self.names.to_real(data)
        if data.get("kind") == "ensemble" and "members" not in data:
            ids = data.get("member_ids") or []
            try:
                data = {**data, "members": [self.request.resolve(int(i)).model_dump(mode="json") for i in ids]}
            except (ValueError, TypeError, OverflowError) as exc:  # OverflowError: int(1e999)
                raise SpecError(f"member_ids: {exc}") from None
        spec = parse_spec(data)
        check_against_data(spec, self.request.columns, self.request.task["task_type"])
        return spec

    def run(self, spec: PipelineSpec | EnsembleSpec) -> str | None:
        key = spec.model_dump_json()
        if key not in self.ran:
            self.ran[key] = self.request.try_spec(spec)
        return self.ran[key]

    def dry_run_tool(self, args: DryRunArgs) -> str:
        try:
            spec = self.spec(args.spec)
        except SpecError as exc:
            return f"error: the spec is invalid: {exc}"
        error = self.run(spec)
        return "ok: the spec runs" if error is None else f"error: the spec fails: {prompts.quoted(error)}"


class LLMExecutor:
    """Implements with a chat model; `last_step` keeps the latest step's counts."""

    def __init__(self, model: Any, limits: LoopLimits | None = None, model_name: str | None = None) -> None:
        self.model = model
        self.limits = limits or LoopLimits()
        self.model_name = model_name
        self.last_step: StepResult[Implementation] | None = None

    def messages(self, request: ExecutorRequest, names: prompts.ColumnNames) -> list[BaseMessage]:
        proposal = request.proposal.model_dump(mode="json", exclude={"failure"})
        base_id = proposal["base_experiment"]
        return [
            SystemMessage(content=prompts.executor_system(request.task, request.rewards, self.limits.max_tool_calls)),
            HumanMessage(
                content=prompts.executor_request(
                    names.to_display(proposal),
                    base_id if base_id is not None else -1,
                    names.to_display(request.base_spec.model_dump(mode="json")),
                )
            ),
        ]

    def implement(self, request: ExecutorRequest) -> AgentReply[Implementation]:
        unbuildable = _unbuildable(request)
        if unbuildable is not None:  # the Scientist's fault: no tokens are spent on it
            return AgentReply(Implementation(error=f"cannot implement the proposal: {unbuildable}"))
        names = prompts.ColumnNames(request.columns)
        checker = SpecChecker(request, names)
        tool = Tool(
            "dry_run", "Fit a spec on a small sample; returns 'ok' or the error.", DryRunArgs, checker.dry_run_tool
        )
        step = run_step(
            self.model,
            self.messages(request, names),
            [tool],
            lambda text: validate_implementation(text, checker),
            self.limits,
            self.model_name,
        )
        self.last_step = step
        if step.value is not None:
            return AgentReply(step.value, step.usage)
        if isinstance(step.salvage, Implementation):  # a spec that does not run: the evaluator records the failure
            return AgentReply(step.salvage, step.usage)
        return AgentReply(Implementation(error=f"the Executor gave no valid spec: {step.problem}"), step.usage)


def _unbuildable(request: ExecutorRequest) -> str | None:
    """Why the proposal cannot be built at all (unknown column, family…), or None."""
    try:
        spec = apply_changes(request.base_spec, request.proposal.changes, request.resolve)
        check_against_data(spec, request.columns, request.task["task_type"])
    except ValidationError as exc:
        return explain(exc)
    except (SpecError, ValueError, KeyError) as exc:
        return str(exc)
    return None


def validate_implementation(text: str, checker: SpecChecker) -> Implementation:
    """The model's answer as an `Implementation` whose spec builds and runs, or `InvalidAnswer`."""
    data = parse_json_object(text)
    if "spec" not in data:
        data = {"spec": data} if "kind" in data or "model" in data else data
    if data.get("spec") is None:
        raise InvalidAnswer('the answer needs a "spec": the complete pipeline (or ensemble) spec')
    try:
        spec = checker.spec(data["spec"])
        implementation = Implementation.model_validate(
            {
                **{k: v for k, v in data.items() if k in ("repairs", "repaired_aspects")},
                "spec": spec.model_dump(mode="json"),
            }
        )
    except ValidationError as exc:
        raise InvalidAnswer(f"the answer does not match the schema: {explain(exc)}") from None
    except SpecError as exc:
        raise InvalidAnswer(f"the spec is invalid: {exc}") from None
    error = checker.run(spec)
    if error is not None:
        salvage = implementation.model_copy(update={"error": error})
        raise InvalidAnswer(f"the spec does not run: {prompts.quoted(error)}", salvage=salvage)
    return implementation
