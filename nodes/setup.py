"""Setup: load and validate the task, fix the split, profile the development part, score a baseline.

Everything here is the environment's: the agents start from a task they cannot change, folds
they cannot pick, and a simple baseline (a scaled linear model on the usable columns) that every
later candidate must beat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from tandem.graph.budget import timed
from tandem.graph.context import RunContext, context_of
from tandem.graph.persistence import new_run_id, remember_data, run_folder, save_profile, write_json
from tandem.graph.state import TandemState, TaskInfo, new_record
from tandem.nodes.evaluator import evaluate_candidate, evaluation_data
from tandem.tools.data import InputError, listed_text, load_task, split_numbers
from tandem.tools.metrics import METRICS
from tandem.tools.profile import DatasetProfile, profile_dataset
from tandem.tools.spec import Columns, ModelSpec, PipelineSpec
from tandem.tools.training import make_split

LOW_CARDINALITY = 20


def baseline_spec(profile: DatasetProfile, task_type: str) -> PipelineSpec:
    """A scaled linear model on the usable numeric and low-cardinality columns.

    ID-like, leaking, constant and duplicate columns are left out from the start: a leak must
    never be kept because it scores well.
    """
    usable = profile.usable()
    numeric = tuple(c.name for c in usable if c.kind in {"numeric", "boolean"} and _is_number(c.dtype))
    categorical = tuple(
        c.name
        for c in usable
        if (c.kind == "categorical" and c.n_unique <= LOW_CARDINALITY)
        or (c.kind == "boolean" and not _is_number(c.dtype))
    )
    if not numeric and not categorical:
        high = tuple(c.name for c in usable if c.kind == "categorical")
        if not high:
            raise InputError("no usable feature columns: every column is an ID, text, constant or a copy of the target")
        return PipelineSpec(columns=Columns(high_cardinality=high), model=ModelSpec(family=_linear(task_type)))
    return PipelineSpec(
        columns=Columns(numeric=numeric, categorical=categorical), model=ModelSpec(family=_linear(task_type))
    )


def _left_out_note(profile: DatasetProfile) -> list[str]:
    left_out = profile.left_out()
    return [f"the baseline and the offline agents leave out {listed_text(left_out)}"] if left_out else []


def _linear(task_type: str) -> str:
    return "ridge" if task_type == "regression" else "logistic"


def _is_number(dtype: str) -> bool:
    return dtype.startswith(("int", "uint", "float", "bool", "Int", "Float", "UInt", "boolean"))


@timed
def setup(state: TandemState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Fix the task, the split and the baseline; the ledger starts with experiment 0."""
    context = context_of(runtime)
    context.check_data_paths(state)  # the Studio server's data folder; anywhere for Python and the CLI
    loaded = context.loaded_task() or load_task(state)  # run_task hands over what it read and checked
    prepared = loaded.prepared
    run_id = context.run_id or state.get("run_id") or new_run_id(prepared.target)
    folder = run_folder(context.runs_dir, run_id)
    folder.path.mkdir(parents=True, exist_ok=True)
    numbers = split_numbers(state)  # checked by load_task already: the same values, never coerced
    seed = numbers["seed"]
    y = prepared.frame[prepared.target]
    split = make_split(
        y,
        prepared.task_type,
        holdout=numbers["holdout"],
        folds=numbers["folds"],
        seed=seed,
        external_holdout=str(Path(holdout_csv).resolve()) if (holdout_csv := state.get("holdout_csv")) else None,
    )
    split.save(folder.split)
    write_json(folder.holdout_rows, {"source": split.holdout_source, "rows": list(split.holdout_rows)})
    csv_path = str(Path(state["csv_path"]).resolve())
    profile = profile_dataset(prepared.frame.loc[list(split.dev_rows)], prepared.target, prepared.task_type)
    task = TaskInfo(
        csv_path=csv_path,
        csv_sha256=loaded.sha256,
        target=prepared.target,
        task_type=prepared.task_type,
        metrics=list(prepared.metrics),
        primary_metric=prepared.primary_metric,
        greater_is_better=METRICS[prepared.primary_metric].greater_is_better,
        classes=list(prepared.classes),
        positive_class=prepared.positive_class,
        n_rows=len(prepared.frame),
        n_dev_rows=len(split.dev_rows),
        n_holdout_rows=len(split.holdout_rows) if loaded.holdout_table is None else len(loaded.holdout_table),
        folds=split.n_folds,
        seed=seed,
        holdout_source=split.holdout_source,
        notes=[*prepared.notes, *_left_out_note(profile)],
    )
    remember_data(task, loaded)  # the nodes of this process train on it without reading the file again
    profile_ref = save_profile(folder, profile)  # once: every checkpoint holds only its name and hash
    spec = baseline_spec(profile, prepared.task_type)
    result = evaluate_candidate(spec, task, folder, context, time_limit=None)
    if result.status != "ok":
        raise InputError(f"the baseline model could not be trained: {result.error}")
    baseline = new_record(
        id=0,
        iteration=0,
        move="baseline",
        proposal="baseline: scaled linear model on the usable columns",
        rationale="A simple, strong-enough reference every candidate must beat.",
        spec=spec.model_dump(mode="json"),
        evaluation=evaluation_data(result),
        primary_metric=task["primary_metric"],
        incumbent_after=0,
    )
    return {
        "run_id": run_id,
        "task": task,
        "profile": profile_ref,
        "ledger": [baseline],
        "incumbent": 0,
        "iteration": 0,
        "status": "running",
        "stop_reason": None,
        "proposal": None,
        "implementation": None,
        "evaluation": None,
        "verification": None,
    }
