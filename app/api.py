"""The Python API: start a run, resume it, fork it, list its checkpoints, read its results, predict.

Every call goes through a SQLite checkpointer in the run folder with `durability="sync"`, so a
run killed at any moment resumes from its last finished step. The run context is not
checkpointed by LangGraph; it is kept in `run.json` and passed again on every call.

A run is found by its folder, wherever that folder is now: nothing stored in it names a path
inside it, and its checkpoint thread is the id `run.json` records. Run, resume and fork hold the
run's lock (`graph.persistence.run_lock`) for as long as they work on it.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, cast

import joblib
import numpy as np
import pandas as pd
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command, StateSnapshot, StreamMode

from tandem import run_listing
from tandem.graph.assembly import TandemGraph, build_graph
from tandem.graph.budget import budget_exhausted
from tandem.graph.context import TRANSIENT_FIELDS, HandedOver, RunContext, default_runs_dir
from tandem.graph.persistence import (
    DamagedRun,
    RunFolder,
    adopt_copy,
    check_database,
    check_ledger,
    check_profile,
    check_run_id,
    dev_data,
    json_clean,
    load_run_config,
    lost_checkpoints,
    new_run_folder,
    new_run_id,
    problem_of,
    remove_run_folder,
    restore_profile,
    run_folder,
    run_lock,
    run_started,
    run_thread,
    save_run_config,
    write_bytes,
    write_json,
    write_jsonl,
)
from tandem.graph.postgres_checkpoints import (
    adopt_copy_thread,
    claim_thread,
    close_saver,
    location_for_new_run,
    open_saver,
    public_location,
    record,
    recorded_location,
    release_thread,
    relocate,
)
from tandem.graph.state import TaskRequest
from tandem.nodes.agents import check_agents
from tandem.nodes.agents.models import with_chat_models
from tandem.nodes.deliver import write_reports
from tandem.tools.data import InputError, LoadedTask, load_task, read_table, split_numbers
from tandem.tools.delivered_model import (
    DeliveredModel,
    FrameError,
    PredictionResult,
    as_delivered,
    deliverable,
    predict_frame,
)
from tandem.tools.spec import TaskType, parse_spec
from tandem.tools.training import fit_final

UpdateHandler = Callable[[str, dict[str, Any]], None]
EventHandler = Callable[[str, dict[str, Any]], None]
"""Receives ("node", {"node": name}) when a node starts and ("folds", {"done", "total"}) while training."""
ApprovalHandler = Callable[[dict[str, Any]], Any]
"""Receives an approval gate's question (nodes/review.py) and returns the human's reply."""
NO_ANSWER: Any = object()


def run_config(thread_id: str, context: RunContext) -> RunnableConfig:
    """LangGraph config for a run: its thread (`run_thread`), and a recursion limit the budget can never reach."""
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": 6 * context.max_iters + 50}


@contextmanager
def open_run(folder: RunFolder, checkpoint_db: str | None = None, *, create: bool = True) -> Iterator[TandemGraph]:
    """The compiled graph bound to the run's own checkpointer (closed on exit): the SQLite file in
    its folder, or the PostgreSQL database `run.json` records (or `checkpoint_db`, graph/postgres_checkpoints.py).
    A command that only reads a run passes `create=False`: a lost SQLite file is then named as such."""
    saver = open_saver(folder, checkpoint_db, create=create)
    try:
        yield build_graph(checkpointer=saver)
    finally:
        close_saver(saver)


def _with_overrides(context: RunContext, overrides: dict[str, Any], call: str) -> RunContext:
    """`context` with the caller's changes, or an `InputError` naming an unknown or bad one.

    Why: `resume_run(..., max_iter=3)` raised dataclasses' raw TypeError, and a bad value was saved
    to run.json, which then could not be read back. Each value is checked by the run context's
    own rules (`RunContext.__post_init__`); callers do this before they write anything."""
    settable = sorted({f.name for f in fields(RunContext)} - TRANSIENT_FIELDS)
    for name in overrides:
        if name not in settable:
            close = difflib.get_close_matches(name, settable, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"settings: {', '.join(settable)}"
            raise InputError(f"{call} got an unknown setting {name!r}; {hint}")
    if "policy" in overrides and "policy_hash" not in overrides:
        overrides = {**overrides, "policy_hash": None}  # a new policy file is hashed anew, as the CLI does
    return replace(context, **overrides)


def _checked_request(
    csv_path: str | Path | pd.DataFrame, target: Any, metrics: Any, primary_metric: Any
) -> tuple[str, list[str] | None]:
    """The target and metrics as the request keeps them, or an `InputError` saying what is wrong.

    Why: a string of metrics was split into characters ("unknown metric 'f'"), a target of the
    wrong type failed deep inside with a TypeError or read as "no target given". A DataFrame's
    whole-number column name (`run_task(df, 0)`) names the column its CSV header writes as "0"."""
    whole = isinstance(target, int | np.integer) and not isinstance(target, bool)
    if whole and isinstance(csv_path, pd.DataFrame) and target in csv_path.columns:
        target = str(target)
    if not isinstance(target, str):
        raise InputError(f"target must be the name of the column to predict (text), got {target!r}")
    if isinstance(metrics, str):  # as --metrics takes them
        metrics = [m for m in metrics.split(",") if m.strip()]
    if metrics is not None and (not isinstance(metrics, list | tuple) or not all(isinstance(m, str) for m in metrics)):
        raise InputError(f"metrics must be metric names (a list, or text separated by commas), got {metrics!r}")
    if primary_metric is not None and not isinstance(primary_metric, str):
        raise InputError(f"primary_metric must be the name of one metric (text), got {primary_metric!r}")
    return target, list(metrics) if metrics else None


def run_task(
    csv_path: str | Path | pd.DataFrame,
    target: str,
    *,
    metrics: list[str] | None = None,
    primary_metric: str | None = None,
    holdout: float = 0.2,
    folds: int = 5,
    seed: int = 0,
    holdout_csv: str | Path | None = None,
    task_type: TaskType | None = None,
    run_id: str | None = None,
    context: RunContext | None = None,
    on_update: UpdateHandler | None = None,
    scientist_model: Any = None,
    executor_model: Any = None,
    on_event: EventHandler | None = None,
    on_approval: ApprovalHandler | None = None,
    checkpoint_db: str | None = None,
) -> dict[str, Any]:
    """Run a whole improvement task and return its summary (the content of `summary.json`).

    `checkpoint_db` (default `$TANDEM_CHECKPOINT_DB`) puts the checkpoints in PostgreSQL instead
    of the run folder's SQLite file; `run.json` records where, without the password.

    With `context.approve` set, the run pauses at approval gates: `on_approval(question)` answers
    them, or the run returns `{"status": "paused", "question": ...}` for `resume_run(..., answer=)`.

    Input is read, hashed and validated once, before anything is written, and handed to the
    setup node: a bad request raises `InputError` and leaves no run folder behind, and so does a
    setup that fails (a baseline that cannot be trained), so trying again with the same id works.
    `scientist_model` / `executor_model` are LangChain chat models (any `BaseChatModel`) for LLM
    agents; they are not stored, so `resume_run` needs them again.

    `csv_path` may be a DataFrame (the target one of its columns): it is written as CSV to the run
    folder (`data.csv`), which is then the run's data file, read back, hashed and checked as any
    CSV is, so a resumed, forked or moved run trains on exactly the same rows.
    """
    if context is not None and not isinstance(context, RunContext):
        raise InputError(f"context must be a RunContext, got {type(context).__name__}")
    target, metric_names = _checked_request(csv_path, target, metrics, primary_metric)
    context = with_chat_models(context or RunContext(), scientist=scientist_model, executor=executor_model)
    check_agents(context)
    data = _frame_csv(csv_path) if isinstance(csv_path, pd.DataFrame) else None
    request: TaskRequest = {
        "csv_path": "" if isinstance(csv_path, pd.DataFrame) else str(Path(csv_path).expanduser().resolve()),
        "target": target,
        "metrics": metric_names,
        "primary_metric": primary_metric,
        "holdout": holdout,
        "folds": folds,
        "seed": seed,
        "holdout_csv": str(Path(holdout_csv).expanduser().resolve()) if holdout_csv else None,
        "task_type": task_type,
    }
    if run_id is not None:
        check_run_id(run_id)  # before the data is read: a hostile id costs nothing
    request.update(split_numbers(request))  # type: ignore[typeddict-item]  # as Python numbers, never coerced
    loaded = load_task(request) if data is None else _load_frame(request, data)
    run_id = request["run_id"] = run_id or new_run_id(loaded.prepared.target)
    handed = HandedOver(loaded)
    del loaded  # setup takes it from the context: this frame must not keep the table alive for the run
    folder = run_folder(context.runs_dir, run_id)
    location = location_for_new_run(checkpoint_db)
    taken = f"run {run_id!r} already exists in {folder.path.parent}; resume it or pick another --run-id"
    if not folder.run_json.exists():
        claim_thread(location, run_id, folder)
    with new_run_folder(folder, exists=taken):
        if data is not None:
            write_bytes(folder.data, data)
            request["csv_path"] = str(folder.data)
        save_run_config(folder, request, context, **record(location))
        try:
            return _drive(folder, request, replace(context, task_data=handed), on_update, on_event, on_approval)
        except Exception:
            if not _set_up(folder):
                remove_run_folder(folder)  # nothing worth keeping, and the id is free again
                release_thread(location, run_id, folder)
            raise


def _frame_csv(frame: pd.DataFrame) -> bytes:
    """A DataFrame as the CSV a run keeps of it: its columns by name, without the index."""
    return frame.to_csv(index=False).encode("utf-8")


def _load_frame(request: TaskRequest, data: bytes) -> LoadedTask:
    """`load_task` on a DataFrame's CSV, staged in a temporary file until the run folder exists
    (a bad request leaves no folder); a message names "the DataFrame", not that file."""
    with tempfile.TemporaryDirectory() as staging:
        path = Path(staging) / "data.csv"
        path.write_bytes(data)
        try:
            return load_task({**request, "csv_path": str(path)})
        except InputError as exc:
            raise InputError(str(exc).replace(str(path), "the DataFrame")) from None


def _set_up(folder: RunFolder) -> bool:
    """Whether a run got past setup (its checkpoints hold the task); when unsure, yes."""
    try:
        with open_run(folder) as graph:
            return "task" in graph.get_state(run_config(run_thread(folder), RunContext())).values
    except Exception:  # a damaged folder is kept for the user to look at
        return True


def resume_run(
    run_id: str,
    *,
    runs_dir: str | Path | None = None,
    on_update: UpdateHandler | None = None,
    scientist_model: Any = None,
    executor_model: Any = None,
    on_event: EventHandler | None = None,
    on_approval: ApprovalHandler | None = None,
    answer: Any = NO_ANSWER,
    force: bool = False,
    checkpoint_db: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Continue a stopped run from its last checkpoint; `overrides` may raise budgets (`max_iters=30`).

    A run whose agents used chat models handed in from Python needs them handed in again. A
    delivered run is not continued (which would replace its model and report) without
    `force=True`: fork it instead to keep it. A folder copied or renamed becomes a run of its own
    on its first resume (`adopt_copy`), so the original is never written to.
    """
    _with_overrides(RunContext(), overrides, "resume_run")  # before anything in the folder is written
    folder = find_run(run_id, runs_dir)
    with run_lock(folder):
        check_database(folder)
        if checkpoint_db:
            relocate(folder, checkpoint_db)  # the database moved: record where it is now
        adopt_copy_thread(folder)
        adopt_copy(folder)
        request, context = load_run_config(folder)
        if overrides:
            context = _with_overrides(context, overrides, "resume_run")
        context = with_chat_models(context, scientist=scientist_model, executor=executor_model)
        check_agents(context)
        with open_run(folder, create=force) as graph:
            config = run_config(run_thread(folder), context)
            snapshot = graph.get_state(config)
            # `next` leaves out a task whose writes were saved just before a kill, so "nothing left
            # to run" is read from the tasks: that one is still to be applied.
            at_end_or_gate = not snapshot.tasks or snapshot.next == ("review",)
            reopen = _reopen_point(graph, config, context) if snapshot.values and at_end_or_gate else None
            delivered = folder.summary.exists() or snapshot.values.get("status") == "delivered"
            if delivered and not force and (reopen is not None or not snapshot.values):
                raise InputError(_delivered(folder, has_checkpoints=bool(snapshot.values)))
            if not snapshot.values and run_started(folder) and not force:
                raise lost_checkpoints(folder)  # never a silent restart from scratch
            if snapshot.values and not force:
                check_ledger(folder, list(snapshot.values.get("ledger", [])))
            check_profile(folder, snapshot.values)  # before any step needs it, not in the middle of one
            redeliver = force and delivered and bool(snapshot.values) and not snapshot.tasks
            goes_on = not snapshot.values or bool(snapshot.tasks) or reopen is not None or redeliver
            if goes_on and (overrides or scientist_model is not None or executor_model is not None):
                save_run_config(folder, request, context)  # a resume that runs nothing leaves run.json as it was
            if reopen is not None:
                _set_summary_aside(folder)
                _reopen(graph, reopen)
                answer = NO_ANSWER  # the gate it was paused at is gone: the search goes on
            elif redeliver:
                _set_summary_aside(folder)
                _redeliver(graph, config)  # nothing left to search: --force delivers again
            started = bool(snapshot.values)
        graph_input = None if started else cast(TaskRequest, request)
        return _drive(folder, graph_input, context, on_update, on_event, on_approval, answer)


def _delivered(folder: RunFolder, *, has_checkpoints: bool) -> str:
    """Why a delivered run is not resumed without --force, and what to do instead."""
    if has_checkpoints:
        what, instead = "continuing it would replace its model, summary and report", ", or fork it (tandem fork)"
    else:  # nothing to fork from; its model still predicts
        what = "its checkpoints are gone, so resuming would start it again from scratch over its model and report"
        instead = ""
    return f"run {folder.run_id!r} was delivered and {what}; pass --force to do so{instead}"


def _reopen_point(graph: TandemGraph, config: RunnableConfig, context: RunContext) -> StateSnapshot | None:
    """Where a run delivered (or paused before delivery) because a budget ran out continues once
    the budget has been raised: its last checkpoint before delivery (or its approval gate).

    None when there is nothing to reopen: a run the Scientist chose to deliver stays delivered,
    and so does one whose budget is still spent.
    """
    for snapshot in graph.get_state_history(config):
        if snapshot.next == ("review",) and not snapshot.values.get("stop_reason"):
            return None  # paused on a proposal, not on a delivery
        if snapshot.next in (("deliver",), ("review",)):
            if (snapshot.values.get("proposal") or {}).get("action") == "deliver":
                return None
            if budget_exhausted(snapshot.values, context) is None:  # type: ignore[arg-type]
                return snapshot
            return None
    return None


def _set_summary_aside(folder: RunFolder) -> None:
    """A delivered run that goes on is not delivered any more: its summary.json becomes
    summary.previous.json until the next delivery writes a new one (and removes it).

    Otherwise a run stopped mid-search looked delivered: `tandem resume` said it was finished and
    did nothing, and `show` and `runs` presented the old delivery as the current one. The model
    file is left in place, so `predict` keeps predicting with that delivery (checked against the
    set-aside summary's hash) until the next one. It is done before the checkpoints move on, so
    the folder never claims a delivery the checkpoints have left behind.
    """
    if folder.summary.exists():
        os.replace(folder.summary, folder.previous_summary)


def _reopen(graph: TandemGraph, snapshot: StateSnapshot) -> None:
    """Fork from `snapshot` with the reward node's verdict replayed, the budget no longer spent,
    so routing goes back to the Scientist."""
    reopened = cast(RunnableConfig, {**snapshot.config, "metadata": {"tandem": "reopened: budget raised"}})
    graph.update_state(reopened, {"stop_reason": None}, as_node="reward")


def _redeliver(graph: TandemGraph, config: RunnableConfig) -> None:
    """Go back to the run's last checkpoint before delivery, so that delivery runs again: the
    refit, the holdout scores, the model file and its recorded SHA-256, the reports. What
    `resume --force` means for a delivered run with no budget raised: its model damaged or
    replaced, or delivered by an older tandem that recorded no hash."""
    for snapshot in graph.get_state_history(config):
        if snapshot.next == ("deliver",):
            again = cast(RunnableConfig, {**snapshot.config, "metadata": {"tandem": "redelivered: resume --force"}})
            graph.update_state(again, {}, as_node="reward")  # routing: a stop reason is set, so deliver
            return


def _reopen_if_budget_allows(graph: TandemGraph, config: RunnableConfig, context: RunContext) -> bool:
    """Reopen a run stopped by a budget that has since been raised (`_reopen_point`); whether it did."""
    snapshot = _reopen_point(graph, config, context)
    if snapshot is not None:
        _reopen(graph, snapshot)
    return snapshot is not None


def _drive(
    folder: RunFolder,
    graph_input: TaskRequest | None,
    context: RunContext,
    on_update: UpdateHandler | None,
    on_event: EventHandler | None = None,
    on_approval: ApprovalHandler | None = None,
    answer: Any = NO_ANSWER,
) -> dict[str, Any]:
    """Stream the graph to its end or to an approval gate nobody answers.

    At a gate (`interrupt()` in nodes/review.py) `on_approval(question)` gives the reply and the
    run continues with `Command(resume=reply)`; without a handler the run stays paused and the
    result says so (`status` "paused", the `question`), to be continued with
    `resume_run(run_id, answer=...)`.
    """
    context = replace(context, runs_dir=str(folder.path.parent), run_id=folder.run_id)
    config = run_config(run_thread(folder), context)
    pending: Any = graph_input if answer is NO_ANSWER else Command(resume=answer)
    with open_run(folder) as graph:
        if on_event is not None and (current := graph.get_state(config).values).get("task"):
            on_event("resumed", _progress_of(current))
        while True:
            modes: list[StreamMode] = ["updates", "custom", "tasks"] if on_event is not None else ["updates"]
            for mode, chunk in graph.stream(pending, config, context=context, stream_mode=modes, durability="sync"):
                _dispatch(mode, chunk, on_update, on_event)
            snapshot = graph.get_state(config)
            if not snapshot.interrupts or on_approval is None:
                break
            pending = Command(resume=on_approval(snapshot.interrupts[0].value))
    values = snapshot.values
    if snapshot.interrupts:
        return {"run_id": folder.run_id, "status": "paused", "question": snapshot.interrupts[0].value}
    return values.get("delivered") or {"run_id": folder.run_id, "status": values.get("status", "running")}


def _progress_of(values: dict[str, Any]) -> dict[str, Any]:
    """Where a resumed run stands, for live views that start in the middle."""
    ledger, incumbent = values.get("ledger") or [], values.get("incumbent")
    return {
        "metric": values["task"]["primary_metric"],
        "iteration": values.get("iteration", 0),
        "seconds_spent": values.get("seconds_spent", 0.0),
        "tokens": sum(u["input"] + u["output"] for u in (values.get("tokens") or {}).values()),
        "incumbent": incumbent,
        "incumbent_score": ledger[incumbent]["primary"] if isinstance(incumbent, int) and ledger else None,
    }


def _dispatch(mode: str, chunk: Any, on_update: UpdateHandler | None, on_event: EventHandler | None) -> None:
    """Node updates go to `on_update`; node starts and fold progress go to `on_event`."""
    if mode == "updates":
        for node, update in chunk.items():
            if on_update is not None and isinstance(update, dict):
                on_update(node, update)
    elif on_event is None:
        return
    elif mode == "tasks" and "input" in chunk:
        on_event("node", {"node": chunk["name"]})
    elif mode == "custom" and isinstance(chunk, dict):
        on_event(str(chunk.get("event", "custom")), chunk)


def find_run(run_id: str, runs_dir: str | Path | None = None) -> RunFolder:
    """The run folder of an id, or an `InputError` that lists the runs there are (or says what a
    run id may be)."""
    runs_dir = Path(runs_dir or default_runs_dir())
    folder = run_folder(runs_dir, run_id)
    if not folder.run_json.exists():
        known = ", ".join(r["run_id"] for r in list_runs(runs_dir)[-5:]) or "none"
        raise InputError(f"no run {run_id!r} in {runs_dir} (recent runs: {known})")
    return folder


def list_runs(runs_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every run in a runs folder, oldest first, with its status, size, best scores and duration
    (`tandem.run_listing`, which `tandem runs` uses without loading this module)."""
    return [dict(row) for row in run_listing.list_runs(runs_dir)]


def load_summary(run_id: str, runs_dir: str | Path | None = None) -> dict[str, Any]:
    """A delivered run's summary.json, or an `InputError` saying how to get one (`tandem.run_listing`)."""
    return run_listing.load_summary(run_id, runs_dir)


def load_model(folder: RunFolder, summary: dict[str, Any]) -> Any:
    """The run's delivered model, loaded only from inside its folder and only if its bytes are
    the ones delivered.

    A model file is a pickle: loading it runs whatever its author put in. `summary.json` names it
    relative to the folder; a name that leads outside (absolute, `..`, a link out) is refused, and
    so is a file whose SHA-256 differs from the one recorded at delivery. The bytes hashed are the
    bytes loaded (read once), so the file cannot change in between. This catches a swapped or
    damaged file, not a hostile author, who can write the hash too: open only trusted folders.
    """
    name = (summary.get("artifacts") or {}).get("model")
    root = folder.path.resolve()
    path = (root / name).resolve() if isinstance(name, str) and name and not Path(name).is_absolute() else None
    if path is None or not path.is_relative_to(root):
        raise InputError(
            f"run {folder.run_id}: summary.json names the model file {name!r}, which is not inside the run folder; "
            "refused to load it (open only run folders from sources you trust)"
        )
    expected = summary.get("model_sha256")
    if not isinstance(expected, str):
        raise InputError(
            f"run {folder.run_id}: summary.json records no SHA-256 for its model (an older tandem delivered it); "
            f"refused to load an unchecked pickle; deliver it again with: "
            f"{run_listing.tandem_command('resume', folder.run_id, folder.path.parent, '--force')}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"run {folder.run_id}: cannot read its model file {name}: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise InputError(
            f"run {folder.run_id}: {name} does not match the SHA-256 recorded at delivery (changed or damaged); "
            "refused to load it"
        )
    return joblib.load(io.BytesIO(data))


def predict_csv(
    run_id: str,
    csv_path: str | Path,
    runs_dir: str | Path | None = None,
    *,
    keep: Sequence[str] = (),
    experiment: int | None = None,
) -> pd.DataFrame:
    """Predictions of a run's delivered model (or of `experiment`) for a new CSV: the `keep`
    columns, the labels or values, and probabilities for classifiers. See `predict_file`."""
    return predict_file(run_id, csv_path, runs_dir, keep=keep, experiment=experiment).predictions


def predict_file(
    run_id: str,
    csv_path: str | Path,
    runs_dir: str | Path | None = None,
    *,
    keep: Sequence[str] = (),
    experiment: int | None = None,
) -> PredictionResult:
    """Predict every row of a CSV with a run's model, and score it when it holds the target.

    The file is read as the run read its data; the model takes its columns in any order, ignores
    extra ones and names a missing or wrongly typed column in one line (`InputError`). `keep`
    copies columns (an ID) into the output. `experiment` predicts with that experiment of the
    ledger instead of the delivered model (`experiment_model`). When the file holds the target,
    the result carries the run's metrics on the rows whose target is known.
    """
    folder = find_run(run_id, runs_dir)
    previous = run_listing.previous_summary(run_id, runs_dir) if experiment is None else None
    if experiment is None:
        summary = previous or load_summary(run_id, runs_dir)
        model, task = load_model(folder, summary), summary["task"]
    else:
        model, task = experiment_model(run_id, experiment, runs_dir)
    frame = read_table(csv_path, text=[*as_delivered(model).text_columns, *(k.strip() for k in keep)])
    try:
        result = predict_frame(model, frame, task, keep=keep)
    except FrameError as exc:
        raise InputError(f"{csv_path}: {exc}") from None
    if previous is not None:
        going_on = (
            f"run {run_id} is going on after its delivery: these are the predictions of the model it delivered "
            "before, until it delivers again"
        )
        result = replace(result, notes=(*result.notes, going_on))
    if result.scores and Path(csv_path).resolve() == Path(task.get("csv_path") or "").resolve():
        show = run_listing.tandem_command("show", run_id, runs_dir)
        seen = (
            "this is the run's own data file, whose development rows the model was trained on: these scores "
            f"are optimistic; the honest score is the holdout's ({show})"
        )
        result = replace(result, notes=(*result.notes, seen))
    return result


def check_output_path(
    output: str | Path, *, csv_path: str | Path, run_id: str, runs_dir: str | Path | None = None
) -> None:
    """Refuse, before any prediction, a destination that would destroy data or cannot be written:
    the file being predicted, the run's own data file, a file of the run folder (which tandem
    manages), a folder, or a path in a folder that does not exist. Raises `InputError` (one line)."""
    out = Path(output).expanduser()
    where = out.resolve()
    folder = find_run(run_id, runs_dir)
    request, _ = load_run_config(folder)
    precious = {
        Path(csv_path).expanduser().resolve(): "the file being predicted",
        Path(str(request.get("csv_path") or csv_path)).expanduser().resolve(): "the run's data file",
    }
    if where in precious:
        raise InputError(f"output {out} is {precious[where]}: the predictions would replace it; choose another path")
    if folder.path.resolve() in where.parents:
        raise InputError(
            f"output {out} is inside run folder {folder.path}, whose files tandem manages; write elsewhere"
        )
    if other := next((d for d in where.parents if (d / "run.json").is_file()), None):
        raise InputError(f"output {out} is inside run folder {other}, whose files tandem manages; write elsewhere")
    if where.is_dir():
        raise InputError(f"output {out} is a folder; give a file path, such as {out / 'predictions.csv'}")
    if where.exists() and not where.is_file():
        raise InputError(f"output {out} is not a regular file (a pipe, a device or a socket); give a file path")
    if not where.parent.is_dir():
        raise InputError(f"output {out}: folder {out.parent} does not exist; create it or choose another path")


def experiment_model(
    run_id: str, experiment: int, runs_dir: str | Path | None = None
) -> tuple[DeliveredModel, dict[str, Any]]:
    """Any successful experiment of a run as a model, and the run's task.

    The experiment is refitted on the whole development part exactly as delivery refits the
    model it delivers (`tools.training.fit_final`), so `--experiment N` of the delivered
    experiment predicts what `model.joblib` does. The refit is cached in the run folder as
    `models/experiment-N.joblib`, with `experiment-N.json` recording its spec hash, the data's
    hash and the file's SHA-256; a cache whose record disagrees is refitted, never loaded.
    The ledger and the task are read from the run's checkpoints, so a stopped run works too.
    """
    folder = find_run(run_id, runs_dir)
    _, context = load_run_config(folder)
    check_database(folder)
    with open_run(folder, create=False) as graph:
        values = graph.get_state(run_config(run_thread(folder), context)).values
    task, ledger = values.get("task"), list(values.get("ledger") or [])
    ok = [r["id"] for r in ledger if r.get("status") == "ok"]
    if not task or not ok:
        again = run_listing.tandem_command("resume", run_id, runs_dir)
        raise InputError(f"run {run_id} has no trained experiment yet; continue it with: {again}")
    record = next((r for r in ledger if r["id"] == experiment), None)
    if record is None or record.get("status") != "ok":
        what = "has no experiment" if record is None else f"did not train experiment (status {record.get('status')})"
        listed = ", ".join(f"#{i}" for i in ok[:12]) + (", …" if len(ok) > 12 else "")
        raise InputError(f"run {run_id} {what} #{experiment}; successful experiments: {listed}")
    path = folder.path / "models" / f"experiment-{experiment}.joblib"
    meta_path = path.with_suffix(".json")
    expected = {"experiment_id": experiment, "spec_hash": record["spec_hash"], "csv_sha256": task["csv_sha256"]}
    meta = run_listing.json_object(run_listing.read_json(meta_path))  # damaged: refit, as when it disagrees
    if path.is_file() and {k: meta.get(k) for k in expected} == expected:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == meta.get("sha256"):
            return joblib.load(io.BytesIO(data)), dict(task)
    X_dev, y_dev, _ = dev_data(task, folder)
    spec = parse_spec(record["spec"])
    model = deliverable(fit_final(spec, X_dev, y_dev, problem_of(task)), X_dev, spec, target=task["target"])
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    path.parent.mkdir(exist_ok=True)
    write_bytes(path, buffer.getvalue())
    write_json(meta_path, {**expected, "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()})
    return model, dict(task)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP, "CSV Injection")."""


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy in which text cells and headers that a spreadsheet would run as formulas start with `'`.

    Predicted labels are the training file's category values, chosen by whoever wrote that file,
    so `=HYPERLINK(...)` must arrive as text. Only text is touched: a number column, negative
    values included, stays numeric. `predict_csv` returns the raw values; this is for files.
    """
    out = frame.rename(columns=lambda name: _inert(name) if isinstance(name, str) else name)
    for name in out.columns:
        column = out[name]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            out[name] = column.astype(object).map(_inert)
    return out


def _inert(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def write_predictions(predictions: pd.DataFrame, destination: Any) -> None:
    """Predictions as CSV (a path or an open text file), safe to open in a spreadsheet.

    Text cells are always quoted: pandas leaves a lone carriage return unquoted, which readers
    take for the end of a row. A path is written as a new file that then takes its name: a hard
    link to a run's file or to the data (which the checks on the path cannot see) keeps its
    content, a FIFO is replaced instead of waited on, and a failed write leaves no half file.
    """
    safe = spreadsheet_safe(predictions)
    if not isinstance(destination, str | os.PathLike):
        safe.to_csv(destination, index=False, quoting=csv.QUOTE_NONNUMERIC)
        return
    target = Path(destination).expanduser()
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        safe.to_csv(staging, index=False, quoting=csv.QUOTE_NONNUMERIC)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Time travel: the checkpoints of a run, and new runs forked from any of them.
# ---------------------------------------------------------------------------------------------


def lineage(graph: TandemGraph, config: RunnableConfig) -> list[StateSnapshot]:
    """The checkpoints that led to the run's current state, oldest first.

    `get_state_history` also lists branches a reopened run left behind; following the parents
    from the head keeps only the path the run really took, so step numbers are unique.
    """
    by_id = {s.config["configurable"]["checkpoint_id"]: s for s in graph.get_state_history(config)}
    chain: list[StateSnapshot] = []
    head = graph.get_state(config)
    checkpoint_id = head.config.get("configurable", {}).get("checkpoint_id") if head.values else None
    while checkpoint_id in by_id:
        snapshot = by_id[checkpoint_id]
        chain.append(snapshot)
        checkpoint_id = (snapshot.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    return chain[::-1]


def describe_checkpoint(snapshot: StateSnapshot, previous: StateSnapshot | None) -> dict[str, Any]:
    """One row of a run's history: what wrote the checkpoint, where the run goes next, the incumbent."""
    values, metadata = snapshot.values, snapshot.metadata or {}
    ledger = values.get("ledger") or []
    incumbent = values.get("incumbent")
    best = ledger[incumbent] if isinstance(incumbent, int) and incumbent < len(ledger) else None
    source = metadata.get("source")
    if source == "input":
        node = "input"
    elif source in ("update", "fork"):
        node = str(metadata.get("tandem") or source)
    else:
        node = "+".join(_names(previous.next)) if previous is not None else "?"
    return {
        "step": metadata.get("step"),
        "checkpoint_id": snapshot.config["configurable"]["checkpoint_id"],
        "node": node,
        "next": _names(snapshot.next),
        "iteration": values.get("iteration", 0),
        "experiments": len(ledger),
        "incumbent": best["id"] if best else None,
        "incumbent_score": best["primary"] if best else None,
        "metric": (values.get("task") or {}).get("primary_metric"),
        "time": snapshot.created_at,
        "paused": bool(snapshot.interrupts),
        "stop_reason": values.get("stop_reason"),
    }


def _names(nodes: tuple[str, ...]) -> list[str]:
    return ["start" if n == "__start__" else n for n in nodes]


def run_history(
    run_id: str, runs_dir: str | Path | None = None, checkpoint_db: str | None = None
) -> list[dict[str, Any]]:
    """Every checkpoint of a run, oldest first (`tandem history`): step, node, next, incumbent, time.
    `checkpoint_db` reads them from that database instead of the one `run.json` records."""
    folder = find_run(run_id, runs_dir)
    _, context = load_run_config(folder)
    check_database(folder)
    with open_run(folder, checkpoint_db, create=False) as graph:
        chain = lineage(graph, run_config(run_thread(folder), context))
    _check_opened(folder, chain, public_location(checkpoint_db) if checkpoint_db else None)
    return [describe_checkpoint(s, chain[i - 1] if i else None) for i, s in enumerate(chain)]


def _check_opened(folder: RunFolder, chain: list[StateSnapshot], location: str | None = None) -> None:
    """After reading a run's checkpoints (from `location` when given instead of the recorded
    database): refuse lost checkpoints and a ledger file that disagrees."""
    if not chain:
        if run_started(folder):
            raise lost_checkpoints(folder, location=location)
        return
    check_ledger(folder, list(chain[-1].values.get("ledger", [])))


def repair_run(run_id: str, runs_dir: str | Path | None = None) -> list[str]:
    """Rebuild a run's ledger and reward files, and for a delivered run its summary and reports,
    from its last checkpoint (`tandem repair`); the names of the files written.

    The checkpoints are the record of a run; these files are views of it written at each step
    and at delivery, so a truncated or deleted one is written again exactly as it was; a missing
    or altered profile.json is profiled again from the CSV and kept if it has the recorded hash. The model
    is not rebuilt (it is not in the checkpoints): a damaged model fails its hash in `predict`,
    and `tandem resume RUN --force` delivers again.
    """
    folder = find_run(run_id, runs_dir)
    with run_lock(folder):
        check_database(folder)
        request, context = load_run_config(folder)
        with open_run(folder, create=False) as graph:
            values = graph.get_state(run_config(run_thread(folder), context)).values
        if not values:
            raise lost_checkpoints(folder) if run_started(folder) else DamagedRun(f"run {run_id}: no checkpoints yet")
        ledger, events = list(values.get("ledger", [])), list(values.get("reward_events", []))
        write_jsonl(folder.experiments, ledger)
        write_jsonl(folder.rewards, events)
        written = [folder.experiments.name, folder.rewards.name]
        if restore_profile(folder, request, values):
            written.append(folder.profile.name)
        summary = values.get("delivered")
        if values.get("status") == "delivered" and isinstance(summary, dict):
            write_json(folder.summary, summary)
            write_reports(folder, json_clean(summary), json_clean(ledger), json_clean(events))
            written += [folder.summary.name, folder.report.name, folder.report_html.name]
    return written


def _pick(chain: list[StateSnapshot], checkpoint: int | str) -> StateSnapshot:
    """A checkpoint by step number (as `tandem history` shows it) or by id (or a unique prefix)."""
    text = str(checkpoint).strip()
    if text.lstrip("-").isdigit():
        found = [s for s in chain if _step(s) == int(text)]
    else:
        found = [s for s in chain if s.config["configurable"]["checkpoint_id"].startswith(text)]
    if len(found) != 1:
        steps = f"{_step(chain[0])}..{_step(chain[-1])}" if chain else "none"
        what = "matches several checkpoints" if found else "is not a checkpoint of this run"
        raise InputError(f"{checkpoint!r} {what} (steps {steps}; see tandem history)")
    return found[0]


def fork_run(
    run_id: str,
    checkpoint: int | str,
    *,
    new_run_id: str | None = None,
    runs_dir: str | Path | None = None,
    run: bool = True,
    on_update: UpdateHandler | None = None,
    on_event: EventHandler | None = None,
    on_approval: ApprovalHandler | None = None,
    scientist_model: Any = None,
    executor_model: Any = None,
    checkpoint_db: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Continue a run from one of its checkpoints in a new run folder; the original is not touched.

    `checkpoint` is a step number or a checkpoint id (`run_history`); `overrides` change the run
    context (`max_iters=30`, `scientist="llm"`, `approve="proposals"`…). Fork at a step whose
    next node is the scientist to let another Scientist decide from there. The new folder gets
    copies of what the run needs (split, profile, holdout rows, the fold-score cache, so no
    experiment is trained again) and its own checkpointer, seeded with the chosen checkpoint on
    a thread named after it. With `run=False` the fork is only prepared (continue it with
    `resume_run`). The new folder's name is taken atomically and locked while the fork is made
    and run. The fork's checkpoints go where the original's are (SQLite in its folder, or the
    PostgreSQL database `run.json` records), or to `checkpoint_db` when given.
    """
    source = find_run(run_id, runs_dir)
    request, context = load_run_config(source)
    context = with_chat_models(
        _with_overrides(context, overrides, "fork_run") if overrides else context,
        scientist=scientist_model,
        executor=executor_model,
    )
    check_agents(context)
    check_database(source)
    with open_run(source, create=False) as graph:
        chain = lineage(graph, run_config(run_thread(source), context))
        _check_opened(source, chain)
        snapshot = _pick(chain, checkpoint)
        saved = _saver(graph).get_tuple(snapshot.config)
    step = _step(snapshot)
    if "task" not in snapshot.values:
        raise InputError(f"step {step} comes before setup finished: start a new run instead")
    if not snapshot.next:
        raise InputError(f"step {step} is the end of the run: fork from an earlier one, or resume with a larger budget")
    check_profile(source, snapshot.values)  # the fork gets a copy of it
    target = run_folder(source.path.parent, new_run_id or f"{source.run_id}-fork{step}")
    context = replace(context, runs_dir=str(target.path.parent), run_id=target.run_id)
    location = public_location(checkpoint_db) if checkpoint_db else recorded_location(source)
    if not target.fork_partial.exists():  # a fork a kill interrupted reuses its own thread
        claim_thread(location, target.run_id, target)
    with new_run_folder(target, exists=f"{target.path} already exists; pick another --run-id"):
        target.fork_partial.touch()  # until run.json exists, the folder is a fork being made
        copy_run_files(source, target)
        checkpoint_id = snapshot.config["configurable"]["checkpoint_id"]
        origin = {"run_id": source.run_id, "step": step, "checkpoint_id": checkpoint_id}
        config = run_config(target.run_id, context)
        with open_run(target, location) as graph:
            assert saved is not None
            metadata = {**saved.metadata, "source": "fork", "tandem": f"fork of {source.run_id}@{step}"}
            _saver(graph).put(
                {"configurable": {"thread_id": target.run_id, "checkpoint_ns": ""}},
                saved.checkpoint,
                metadata,  # type: ignore[arg-type]
                saved.checkpoint["channel_versions"],
            )
            # The same node as in the original writes the new run's id, so routing continues as it would have.
            renamed = cast(RunnableConfig, {**config, "metadata": {"tandem": "fork: new run id"}})
            graph.update_state(renamed, {"run_id": target.run_id})
            _reopen_if_budget_allows(graph, config, context)
            values = graph.get_state(config).values
        write_jsonl(target.experiments, list(values.get("ledger", [])))
        write_jsonl(target.rewards, list(values.get("reward_events", [])))
        # run.json comes last: until it exists the fork is not a run (a kill before this leaves no half-run)
        save_run_config(target, {**request, "run_id": target.run_id}, context, forked_from=origin, **record(location))
        target.fork_partial.unlink()
        if not run:
            return {"run_id": target.run_id, "status": "forked", "forked_from": origin}
        return _drive(target, None, context, on_update, on_event, on_approval)


def _step(snapshot: StateSnapshot) -> int | None:
    return (snapshot.metadata or {}).get("step")


def _saver(graph: TandemGraph) -> BaseCheckpointSaver[Any]:
    assert isinstance(graph.checkpointer, BaseCheckpointSaver), "the graph was compiled without a checkpointer"
    return graph.checkpointer


def copy_run_files(source: RunFolder, target: RunFolder) -> None:
    """What a fork needs from its original: the split, the profile, the holdout rows, the cache.

    Cache files are hard-linked where the file system allows (they are written once, atomically,
    and never changed in place), else copied.
    """
    for path in (source.split, source.profile, source.holdout_rows, source.data):
        if path.exists():
            shutil.copy2(path, target.path / path.name)
    if source.cache.exists():
        shutil.copytree(source.cache, target.cache, copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
