"""The Python API: start a run, resume it, read its results, predict with its model.

Every call goes through a SQLite checkpointer in the run folder with `durability="sync"`, so a
run killed at any moment resumes from its last finished step. The run context is not
checkpointed by LangGraph; it is kept in `run.json` and passed again on every call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import joblib
import pandas as pd
from langchain_core.runnables import RunnableConfig

from graph.builder import TandemGraph, build_graph
from graph.context import RunContext, default_runs_dir
from graph.persistence import RunFolder, load_run_config, open_checkpointer, run_folder, save_run_config
from graph.state import TaskRequest
from nodes.common import budget_exhausted
from nodes.setup import load_task, new_run_id
from tools.data import InputError, read_table
from tools.spec import parse_spec, referenced_columns

UpdateHandler = Callable[[str, dict[str, Any]], None]


def run_config(run_id: str, context: RunContext) -> RunnableConfig:
    """LangGraph config for a run: its thread, and a recursion limit the budget can never reach."""
    return {"configurable": {"thread_id": run_id}, "recursion_limit": 6 * context.max_iters + 50}


@contextmanager
def open_run(folder: RunFolder) -> Iterator[TandemGraph]:
    """The compiled graph bound to the run's own checkpointer (closed on exit)."""
    saver = open_checkpointer(folder)
    try:
        yield build_graph(checkpointer=saver)
    finally:
        saver.conn.close()


def run_task(
    csv_path: str | Path,
    target: str,
    *,
    metrics: list[str] | None = None,
    primary_metric: str | None = None,
    holdout: float = 0.2,
    folds: int = 5,
    seed: int = 0,
    holdout_csv: str | Path | None = None,
    task_type: str | None = None,
    run_id: str | None = None,
    context: RunContext | None = None,
    on_update: UpdateHandler | None = None,
) -> dict[str, Any]:
    """Run a whole improvement task and return its summary (the content of `summary.json`).

    Input is validated before anything is written: a bad request raises `InputError` and leaves
    no run folder behind.
    """
    context = context or RunContext()
    request: TaskRequest = {
        "csv_path": str(Path(csv_path).expanduser().resolve()),
        "target": target,
        "metrics": list(metrics) if metrics else None,
        "primary_metric": primary_metric,
        "holdout": holdout,
        "folds": folds,
        "seed": seed,
        "holdout_csv": str(Path(holdout_csv).expanduser().resolve()) if holdout_csv else None,
        "task_type": task_type,  # type: ignore[typeddict-item]
    }
    prepared = load_task(dict(request))
    run_id = request["run_id"] = run_id or new_run_id(prepared.target)
    folder = run_folder(context.runs_dir, run_id)
    if folder.run_json.exists():
        raise InputError(
            f"run {request['run_id']!r} already exists in {folder.path.parent}; resume it or pick another --run-id"
        )
    save_run_config(folder, dict(request), context)
    return _drive(folder, request, context, on_update)


def resume_run(
    run_id: str,
    *,
    runs_dir: str | Path | None = None,
    on_update: UpdateHandler | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Continue a stopped run from its last checkpoint; `overrides` may raise budgets (`max_iters=30`)."""
    folder = find_run(run_id, runs_dir)
    request, context = load_run_config(folder)
    if overrides:
        context = replace(context, **overrides)
        save_run_config(folder, request, context)
    with open_run(folder) as graph:
        config = run_config(folder.run_id, context)
        snapshot = graph.get_state(config)
        if snapshot.values and not snapshot.next:
            _reopen_if_budget_allows(graph, config, context)
        started = bool(snapshot.values)
    return _drive(folder, None if started else cast(TaskRequest, request), context, on_update)


def _reopen_if_budget_allows(graph: TandemGraph, config: RunnableConfig, context: RunContext) -> None:
    """A run delivered because a budget ran out continues when the budget has been raised.

    This forks from the last checkpoint before delivery: the reward node's verdict is replayed
    with the budget no longer spent, so routing goes back to the Scientist. A run the Scientist
    chose to deliver stays delivered.
    """
    for snapshot in graph.get_state_history(config):
        if snapshot.next == ("deliver",):
            if (snapshot.values.get("proposal") or {}).get("action") == "deliver":
                return
            if budget_exhausted(snapshot.values, context) is None:  # type: ignore[arg-type]
                graph.update_state(snapshot.config, {"stop_reason": None}, as_node="reward")
            return


def _drive(
    folder: RunFolder, graph_input: TaskRequest | None, context: RunContext, on_update: UpdateHandler | None
) -> dict[str, Any]:
    context = replace(context, runs_dir=str(folder.path.parent))
    config = run_config(folder.run_id, context)
    with open_run(folder) as graph:
        for chunk in graph.stream(graph_input, config, context=context, stream_mode="updates", durability="sync"):
            for node, update in chunk.items():
                if on_update is not None and isinstance(update, dict):
                    on_update(node, update)
        values = graph.get_state(config).values
    return values.get("delivered") or {"run_id": folder.run_id, "status": values.get("status", "running")}


def find_run(run_id: str, runs_dir: str | Path | None = None) -> RunFolder:
    """The run folder of an id, or an `InputError` that lists the runs there are."""
    runs_dir = Path(runs_dir or default_runs_dir())
    folder = run_folder(runs_dir, run_id)
    if not folder.run_json.exists():
        known = ", ".join(r["run_id"] for r in list_runs(runs_dir)[-5:]) or "none"
        raise InputError(f"no run {run_id!r} in {runs_dir} (recent runs: {known})")
    return folder


def list_runs(runs_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every run in a runs folder, oldest first, with its status and best scores."""
    root = Path(runs_dir or default_runs_dir())
    rows = []
    for run_json in sorted(root.glob("*/run.json")):
        folder = RunFolder(run_json.parent)
        request = json.loads(run_json.read_text())["request"]
        summary = json.loads(folder.summary.read_text()) if folder.summary.exists() else None
        rows.append(
            {
                "run_id": folder.run_id,
                "status": summary["status"] if summary else "stopped",
                "target": request.get("target"),
                "csv": Path(request.get("csv_path", "")).name,
                "primary_metric": summary["task"]["primary_metric"] if summary else None,
                "best_cv": summary["best"]["cv"].get(summary["task"]["primary_metric"]) if summary else None,
                "best_holdout": summary["best"]["holdout"].get(summary["task"]["primary_metric"]) if summary else None,
            }
        )
    return rows


def load_summary(run_id: str, runs_dir: str | Path | None = None) -> dict[str, Any]:
    folder = find_run(run_id, runs_dir)
    if not folder.summary.exists():
        raise InputError(f"run {run_id!r} has not delivered yet; continue it with: tandem resume {run_id}")
    return json.loads(folder.summary.read_text())


def predict_csv(run_id: str, csv_path: str | Path, runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Predictions of a run's delivered model for a new CSV: labels, and probabilities for classifiers."""
    summary = load_summary(run_id, runs_dir)
    frame = read_table(csv_path)
    needed = referenced_columns(parse_spec(summary["best"]["spec"]))
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise InputError(f"{csv_path} lacks columns the model reads: {', '.join(map(repr, missing))}")
    model = joblib.load(summary["artifacts"]["model"])
    X = frame.drop(columns=[summary["task"]["target"]], errors="ignore")
    out = pd.DataFrame({"prediction": model.predict(X)}, index=frame.index)
    if summary["task"]["task_type"] != "regression" and hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        for i, label in enumerate(model.classes_):
            out[f"proba_{label}"] = proba[:, i]
    return out
