"""The LLM Scientist: a chat model that reads a bounded picture of the shared memory and proposes.

Same interface as the playbook: a `ScientistView` in, a typed `Proposal` out, with the tokens
spent. The model may look at the data through read-only analysis tools (profile, one column,
a column against the target, correlations, a ledger record, the catalogue), a bounded number of
times per step. Its answer is checked the way the environment will check it (schema, base
experiment, families, parameters, columns, already-tried specs) and sent back once with the
reason when it fails. A step that still fails yields a proposal the verifier marks invalid,
so the Scientist pays the invalid-proposal penalty and the loop goes on.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import pandas as pd
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationError

from tandem.graph.messages import Proposal, apply_changes
from tandem.nodes.agents import prompts
from tandem.nodes.agents.base import AgentReply, ScientistView
from tandem.nodes.agents.learned_scientist import LearnedScientist
from tandem.nodes.agents.llm_loop import (
    InvalidAnswer,
    LoopLimits,
    StepResult,
    Tool,
    explain,
    parse_json_object,
    run_step,
)
from tandem.nodes.agents.memory import change_kind, summarize
from tandem.tools.analysis import clip, column_detail, correlations, target_relation
from tandem.tools.spec import FAMILIES, SpecError, catalogue, check_against_data, spec_hash

PROFILE_PAGE = 40
TOOL_RESULT_CHARS = 3500


class ProfileArgs(BaseModel):
    offset: int = Field(default=0, ge=0, description=f"first column to list ({PROFILE_PAGE} per page)")


class ColumnArgs(BaseModel):
    column: str = Field(description="the column's name exactly as shown")


class CorrelationArgs(BaseModel):
    column: str | None = Field(default=None, description="only pairs with this numeric column (default: all pairs)")
    top: int = Field(default=10, ge=1, le=30)


class ExperimentArgs(BaseModel):
    experiment_id: int = Field(ge=0)


class CatalogueArgs(BaseModel):
    family: str | None = Field(default=None, description="one family's parameters (default: everything)")


class AnalysisTools:
    """The Scientist's read-only tools over one view; data is loaded once, on first use."""

    def __init__(self, view: ScientistView, names: prompts.ColumnNames) -> None:
        self.view = view
        self.names = names

    @cached_property
    def frame(self) -> tuple[pd.DataFrame, pd.Series]:
        if self.view.data is None:
            raise ValueError("the data is not available in this context; use profile_summary")
        return self.view.data()

    def tools(self) -> list[Tool]:
        return [
            Tool(
                "profile_summary",
                "The dataset profile: target and every column's statistics, paged.",
                ProfileArgs,
                self.profile,
            ),
            Tool("column_detail", "One column in detail: quantiles or most frequent values.", ColumnArgs, self.column),
            Tool(
                "target_relation", "How the target varies across a column's bins or values.", ColumnArgs, self.relation
            ),
            Tool(
                "correlations",
                "Strongest Spearman correlations between numeric columns.",
                CorrelationArgs,
                self.correlations,
            ),
            Tool(
                "experiment",
                "The full record of one experiment in the ledger (spec, scores, verdict).",
                ExperimentArgs,
                self.experiment,
            ),
            Tool(
                "catalogue",
                "Model families with parameter ranges, feature operations, options.",
                CatalogueArgs,
                self.catalogue,
            ),
        ]

    def _out(self, value: Any) -> str:
        return prompts.dumps(self.names.to_display(value), TOOL_RESULT_CHARS)

    def _real(self, column: str) -> str:
        return self.names.real.get(column, column)

    def profile(self, args: ProfileArgs) -> str:
        profile = self.view.profile
        page = profile.columns[args.offset : args.offset + PROFILE_PAGE]
        return self._out(
            {
                "rows": profile.n_rows,
                "duplicate_rows": profile.n_duplicate_rows,
                "target": profile.target.model_dump(mode="json"),
                "columns": [c.model_dump(mode="json", exclude={"leak_reason"}) for c in page],
                "columns_total": len(profile.columns),
                "next_offset": args.offset + PROFILE_PAGE
                if args.offset + PROFILE_PAGE < len(profile.columns)
                else None,
            }
        )

    def column(self, args: ColumnArgs) -> str:
        name = self._real(args.column)
        col = self.view.profile.column(name)
        X, _ = self.frame
        return self._out({"column": name, "kind": col.kind, "strength": col.target_strength, **column_detail(X, name)})

    def relation(self, args: ColumnArgs) -> str:
        X, y = self.frame
        return self._out(target_relation(X, y, self._real(args.column), self.view.task["task_type"]))

    def correlations(self, args: CorrelationArgs) -> str:
        X, y = self.frame
        column = self._real(args.column) if args.column else None
        return self._out(correlations(X, y, self.view.task["task_type"], column, args.top))

    def experiment(self, args: ExperimentArgs) -> str:
        if args.experiment_id >= len(self.view.ledger):
            raise ValueError(f"no experiment #{args.experiment_id}; the ledger has #0..#{len(self.view.ledger) - 1}")
        r = self.view.record(args.experiment_id)
        keys = (
            "id",
            "base_experiment",
            "move",
            "proposal",
            "status",
            "error",
            "cv",
            "cv_std",
            "gain",
            "significant",
            "fidelity",
            "spec",
        )
        record: dict[str, Any] = {k: r[k] for k in keys}  # type: ignore[literal-required]
        record["rationale"] = clip(r["rationale"], 300)
        record["error"] = clip(r["error"], 300) if r["error"] else None  # JSON-quoted by _out; can quote cells
        record["verification"] = r["verification"][:5]
        return self._out(record)

    def catalogue(self, args: CatalogueArgs) -> str:
        full = catalogue(self.view.task["task_type"])
        if args.family is None:
            return self._out(full)
        if args.family not in full["families"]:
            raise ValueError(f"no family {args.family!r} for this task; families: {sorted(full['families'])}")
        return self._out({args.family: full["families"][args.family]})


class LLMScientist:
    """Proposes with a chat model; `last_step` keeps the latest step's counts (calls, tools, prompt tokens)."""

    def __init__(
        self,
        model: Any,
        limits: LoopLimits | None = None,
        model_name: str | None = None,
        policy: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.limits = limits or LoopLimits()
        self.model_name = model_name
        self.last_step: StepResult[Proposal] | None = None
        # a learned policy (`--policy FILE`) advises: its ranking of the moves still open goes in the prompt
        self.advisor = LearnedScientist(policy) if policy is not None else None

    def messages(self, view: ScientistView, names: prompts.ColumnNames) -> list[BaseMessage]:
        """The step's opening prompt: fixed rules, then the situation with a bounded memory."""
        incumbent = view.record(view.incumbent)
        metric = view.task["primary_metric"]
        situation = prompts.scientist_situation(
            task_block=prompts.task_text(view.task, view.profile, names),
            iterations_left=view.iterations_left,
            seconds_left=view.seconds_left,
            tokens_left=view.tokens_left,
            incumbent_line=f"experiment #{incumbent['id']}, CV {metric} {incumbent['primary'] or float('nan'):.4f}",
            incumbent_spec=prompts.dumps(names.to_display(_compact(incumbent["spec"]))),
            memory=summarize(view),
            hint=prompts.policy_hint(self.advisor.ranking(view)) if self.advisor is not None else "",
        )
        return [
            SystemMessage(content=prompts.scientist_system(view.task, view.rewards, self.limits.max_tool_calls)),
            HumanMessage(content=situation),
        ]

    def propose(self, view: ScientistView) -> AgentReply[Proposal]:
        names = prompts.ColumnNames(c.name for c in view.profile.columns)
        tools = AnalysisTools(view, names).tools()
        step = run_step(
            self.model,
            self.messages(view, names),
            tools,
            lambda text: validate_proposal(text, view, names),
            self.limits,
            self.model_name,
        )
        self.last_step = step
        if step.value is not None:
            return AgentReply(step.value, step.usage)
        if isinstance(step.salvage, Proposal):  # well-formed but invalid: the verifier will say why
            return AgentReply(step.salvage, step.usage)
        failed = Proposal(
            rationale="the Scientist gave no valid answer", failure=step.problem or "no answer", move="no_answer"
        )
        return AgentReply(failed, step.usage)


def _compact(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """A spec for the prompt: an ensemble by its member experiments (their specs are one tool call away)."""
    if not spec or spec.get("kind") != "ensemble":
        return spec
    families = [m.get("model", {}).get("family") for m in spec.get("members", [])]
    keep = {k: spec.get(k) for k in ("kind", "method", "member_ids", "weights")}
    return {**keep, "member_families": families}


def validate_proposal(text: str, view: ScientistView, names: prompts.ColumnNames) -> Proposal:
    """The model's answer as a `Proposal` the environment can build, or `InvalidAnswer` saying why not."""
    data = names.to_real(parse_json_object(text))
    data.pop("failure", None)  # the agent's to set, not the model's
    for key, limit in (("rationale", 2000), ("move", 60)):
        if isinstance(data.get(key), str):
            data[key] = clip(data[key], limit)
    try:
        proposal = Proposal.model_validate(data)
    except ValidationError as exc:
        raise InvalidAnswer(f"the JSON does not match the proposal schema: {explain(exc)}") from None
    if proposal.action == "deliver":
        return proposal
    if not proposal.changes:
        raise InvalidAnswer("an experiment needs at least one change (or answer with action 'deliver')")
    if proposal.move is None:
        proposal = proposal.model_copy(update={"move": clip(change_kind(proposal.changes[0].model_dump()), 40)})
    base_id = view.incumbent if proposal.base_experiment is None else proposal.base_experiment
    if not 0 <= base_id < len(view.ledger):
        raise InvalidAnswer(
            f"base_experiment {base_id} does not exist; use 0..{len(view.ledger) - 1} or null", salvage=proposal
        )
    try:
        spec = apply_changes(view.spec_of(base_id), proposal.changes, view.spec_of)
        check_against_data(spec, [c.name for c in view.profile.columns], view.task["task_type"])
    except (KeyError, IndexError) as exc:
        raise InvalidAnswer(f"base_experiment {base_id}: {exc}", salvage=proposal) from None
    except ValidationError as exc:
        raise InvalidAnswer(f"the changes give an invalid spec: {_hint(explain(exc))}", salvage=proposal) from None
    except (SpecError, ValueError) as exc:
        raise InvalidAnswer(f"the changes cannot be applied: {_hint(str(exc))}", salvage=proposal) from None
    tried = {r["spec_hash"]: r["id"] for r in view.ledger if r["spec_hash"]}
    if spec_hash(spec) in tried:
        raise InvalidAnswer(
            f"this gives the very spec of experiment #{tried[spec_hash(spec)]}, already tried; propose something new",
            salvage=proposal,
        )
    return proposal


def _hint(message: str) -> str:
    if "model family" in message:
        return f"{message}; families are {sorted(FAMILIES)}"
    return message


__all__ = ["AnalysisTools", "LLMScientist", "validate_proposal"]
