"""Deliver node: refit the incumbent on the whole development part, score the holdout once, write artifacts.

The holdout is scored here and nowhere else, for the delivered model and the baseline, so the
report shows the gain on unseen data honestly. Every file is written atomically, and running
this node again (after a crash during delivery) rewrites the same artifacts. The reports are
rendered from the summary and ledger this node holds, not read back from the files it wrote.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import joblib
from langgraph.runtime import Runtime

from tandem.graph.budget import seconds_left
from tandem.graph.context import RunContext, context_of
from tandem.graph.persistence import (
    RunFolder,
    atomic_file,
    dev_data,
    holdout_data,
    json_clean,
    problem_of,
    write_bytes,
    write_json,
    write_jsonl,
    write_text,
)
from tandem.graph.reward_rules import small_data_blend
from tandem.graph.state import ExperimentRecord, TandemState, new_record
from tandem.nodes.agents.models import agents_summary
from tandem.nodes.evaluator import evaluate_candidate, evaluation_data
from tandem.nodes.reports import load_insight, save_insight
from tandem.tools.data import sha256_file
from tandem.tools.delivered_model import deliverable
from tandem.tools.model_insight import IMPORTANCE_SECONDS, ModelInsight, holdout_insight
from tandem.tools.pause_points import pause_point
from tandem.tools.report import render_report
from tandem.tools.report_html import cv_figure, figure_png, render_html, reward_figure
from tandem.tools.spec import parse_spec, spec_hash
from tandem.tools.training import fit_final, load_oof, release_after_large_fit, score_holdout


def _fit_and_score(
    record: ExperimentRecord,
    state: TandemState,
    folder: RunFolder,
    n_threads: int,
    explain_until: float | None = None,
) -> tuple[Any, dict[str, float], ModelInsight | None]:
    """The refit model, its holdout scores and, until `explain_until` (a `time.perf_counter()`
    time), its holdout insight (the report's plots and permutation importance), from the one read
    of the holdout. The refit has the run's `n_threads`: nothing else runs beside it."""
    task, problem = state["task"], problem_of(state["task"])
    X_dev, y_dev, _ = dev_data(task, folder)
    release_after_large_fit(X_dev.size)  # on large data the refit starts from what the run holds, not its last peak
    model = fit_final(parse_spec(record["spec"]), X_dev, y_dev, problem, n_threads=n_threads)  # type: ignore[arg-type]
    X_hold, y_hold = holdout_data(task, folder)
    insight = (
        holdout_insight(
            model,
            X_hold,
            y_hold,
            problem,
            experiment_id=record["id"],
            spec=record["spec"] or {},
            importance_seconds=max(0.0, explain_until - time.perf_counter()),
        )
        if explain_until is not None
        else None
    )
    return model, score_holdout(model, X_hold, y_hold, problem), insight


#: Delivery's work after the holdout's permutation importance: the baseline's refit and holdout
#: scores, the reports (1.2 s of plots on breast cancer).
AFTER_IMPORTANCE_SECONDS = 1.5


def _explain_until(state: TandemState, context: RunContext) -> float:
    """When the holdout's permutation importance must end: within its usual bound, and before the
    time budget does, less what delivery does after it (unbounded, it once took 7.8 of delivery's
    10.5 s on House Prices at 60 s). What delivery does before it is spent from the same time. With
    nothing left it still runs, on its fewest rows and one repeat."""
    left = seconds_left(state, context)
    bound = IMPORTANCE_SECONDS if left is None else min(IMPORTANCE_SECONDS, max(0.0, left - AFTER_IMPORTANCE_SECONDS))
    return time.perf_counter() + bound


def _experiment_summary(record: ExperimentRecord, holdout: dict[str, float]) -> dict[str, Any]:
    return {
        "experiment_id": record["id"],
        "proposal": record["proposal"],
        "spec_hash": record["spec_hash"],
        "spec": record["spec"],
        "cv": record["cv"],
        "cv_std": record["cv_std"],
        "holdout": holdout,
    }


DELIVERY_MOVE = "delivery_blend"
"""The move of the ledger row delivery adds: the environment's blend, no agent's proposal."""


def selection_rule(ledger: list[ExperimentRecord], incumbent: int, delivered: int) -> str:
    """Why this experiment was delivered, in the words `summary.json` and the reports show."""
    if delivered == incumbent:
        return "the best mean CV score"
    spec = ledger[delivered]["spec"] or {}
    weights = dict(zip(spec.get("member_ids") or (), spec.get("weights") or (), strict=False))
    picks = ", ".join(f"#{i} ×{w:g}" for i, w in weights.items())
    return f"on small data, Caruana's ensemble selection over the best single pipelines ({picks})"


def small_data_delivery(
    state: TandemState, context: RunContext, folder: RunFolder
) -> tuple[int, ExperimentRecord | None]:
    """The experiment small data deliver (`small_data_blend`), with the blend's new ledger row
    when no experiment scored it already; the incumbent when no blend is chosen or it fails.

    The blend is cross-validated on the run's folds like any candidate, from its members' cached
    predictions, so its row holds real fold scores and nothing is trained for it.
    """
    ledger, task = state["ledger"], state["task"]
    y = dev_data(task, folder)[1].to_numpy()
    spec = small_data_blend(ledger, lambda key: load_oof(folder.cache, key), y, problem_of(task))
    if spec is None:
        return state["incumbent"], None
    key = spec_hash(spec)
    scored = next((r["id"] for r in ledger if r["spec_hash"] == key and r["status"] == "ok"), None)
    if scored is not None:
        return scored, None
    result = evaluate_candidate(spec, task, folder, context, time_limit=context.candidate_time_limit)
    if result.status != "ok":
        return state["incumbent"], None
    row = new_record(
        id=len(ledger),
        iteration=state.get("iteration", 0),
        move=DELIVERY_MOVE,
        proposal=f"deliver a blend of experiments {', '.join(f'#{i}' for i in spec.member_ids)}",
        rationale="On small data no single model's CV lead can be trusted; Caruana's greedy selection "
        "on the out-of-fold predictions of the best single pipelines chose these weights.",
        spec=spec.model_dump(mode="json"),
        evaluation=evaluation_data(result),
        primary_metric=task["primary_metric"],
        incumbent_after=state["incumbent"],
    )
    return row["id"], row


def build_summary(
    state: TandemState,
    folder: RunFolder,
    holdout: dict[int, dict[str, float]],
    stop_reason: str,
    delivered: int,
) -> dict[str, Any]:
    """The run's summary.json: the contract `tandem show`, the benchmark and users rely on."""
    ledger, task = state["ledger"], state["task"]
    totals: dict[str, float] = defaultdict(float)
    parts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for event in state.get("reward_events", []):
        totals[event["agent"]] += event["total"]
        for name, value in event["parts"].items():
            parts[event["agent"]][name] += value
    best = ledger[delivered]
    return {
        "run_id": folder.run_id,
        "status": "delivered",
        "stop_reason": stop_reason,
        "task": {
            "csv_path": task["csv_path"],
            "target": task["target"],
            "task_type": task["task_type"],
            "metrics": task["metrics"],
            "primary_metric": task["primary_metric"],
            "greater_is_better": task["greater_is_better"],
            "classes": task["classes"],
            "positive_class": task["positive_class"],
            "n_rows": task["n_rows"],
            "n_dev_rows": task["n_dev_rows"],
            "n_holdout_rows": task["n_holdout_rows"],
            "folds": task["folds"],
            "seed": task["seed"],
            "holdout_source": task["holdout_source"],
            "notes": task["notes"],
        },
        "iterations": state.get("iteration", 0),
        "incumbent": state["incumbent"],
        "selection": selection_rule(ledger, state["incumbent"], delivered),
        "experiments": len(ledger),
        "seconds_spent": round(state.get("seconds_spent", 0.0), 2),
        "baseline": _experiment_summary(ledger[0], holdout[0]),
        "best": _experiment_summary(best, holdout[best["id"]]),
        "rewards": {agent: round(totals.get(agent, 0.0), 6) for agent in ("scientist", "executor")},
        "reward_parts": {agent: {k: round(v, 6) for k, v in p.items()} for agent, p in parts.items()},
        "tokens": {
            agent: dict(state.get("tokens", {}).get(agent, {"input": 0, "output": 0}))
            for agent in ("scientist", "executor")
        },
        "feedback": list(state.get("feedback", [])),
        "artifacts": folder.artifacts(),  # names relative to the run folder, which may move
    }


def deliver(state: TandemState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Refit, score the holdout, save the model and write summary, ledger and report.

    Delivery's seconds are the run's too (the time budget keeps them for it): they are added to
    `seconds_spent`, in the summary as in the state, up to the summary's writing."""
    started = time.perf_counter()
    context = context_of(runtime)
    folder = RunFolder.of(state, context)
    stop_reason = state.get("stop_reason") or "delivered"
    task, chosen, blend = state["task"], state["incumbent"], None
    explain_until = _explain_until(state, context)  # the blend's choice and the refit are spent from the time left
    if task["n_dev_rows"] < context.small_data_rows:
        chosen, blend = small_data_delivery(state, context, folder)
    ledger = state["ledger"] + ([blend] if blend is not None else [])
    state = {**state, "ledger": ledger}  # type: ignore[typeddict-item]
    best = ledger[chosen]
    model, best_holdout, insight = _fit_and_score(best, state, folder, context.n_jobs, explain_until=explain_until)
    holdout = {best["id"]: best_holdout}
    if best["id"] != 0:
        holdout[0] = _fit_and_score(ledger[0], state, folder, context.n_jobs)[1]
    # saved behind the door that takes the user's raw frame (padded names, any order, one-line errors)
    model = deliverable(model, dev_data(task, folder)[0], parse_spec(best["spec"] or {}), target=task["target"])
    with atomic_file(folder.model) as fh:
        joblib.dump(model, fh)
    pause_point("delivery")  # a test hook, off by default (tools/pause_points.py)
    spent = round(time.perf_counter() - started, 4)
    state = {**state, "seconds_spent": state.get("seconds_spent", 0.0) + spent}  # type: ignore[typeddict-item]
    summary = build_summary(state, folder, holdout, stop_reason, delivered=chosen)
    summary["model_sha256"] = sha256_file(folder.model)  # predict loads the model only if it still matches
    summary.update(agents_summary(context, summary["tokens"]))  # kinds, models, $ with a price table
    events = list(state.get("reward_events", []))
    write_jsonl(folder.experiments, list(ledger))
    write_jsonl(folder.rewards, events)
    write_json(folder.summary, summary)
    folder.previous_summary.unlink(missing_ok=True)  # set aside by a resume after delivery: replaced now
    if insight is not None:
        save_insight(folder, insight)
    write_reports(folder, json_clean(summary), json_clean(list(ledger)), json_clean(events), json_clean(insight))
    update: dict[str, Any] = {
        "status": "delivered",
        "stop_reason": stop_reason,
        "delivered": summary,
        "seconds_spent": spent,  # added to the state's by its reducer
    }
    return update if blend is None else {**update, "ledger": [blend]}


def write_reports(
    folder: RunFolder,
    summary: dict[str, Any],
    experiments: list[dict[str, Any]],
    events: list[dict[str, Any]],
    insight: ModelInsight | None = None,
) -> None:
    """`report.md` with its two plots and `report.html`, from the values just written as JSON
    (cleaned as they were for the files, so the reports show exactly what the files hold).
    Without `insight` (tandem repair) the one delivery kept in `model_insight.json` is drawn."""
    task = summary["task"]
    scores = cv_figure(experiments, task["primary_metric"], task["greater_is_better"])
    write_bytes(folder.scores_plot, figure_png(scores))
    write_bytes(folder.rewards_plot, figure_png(reward_figure(events)))
    images = {"scores": folder.scores_plot.name, "rewards": folder.rewards_plot.name}
    write_text(folder.report, render_report(summary, experiments, images=images))
    insight = insight if insight is not None else load_insight(folder)
    write_text(folder.report_html, render_html(summary, experiments, events, insight))
