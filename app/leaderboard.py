"""A run's leaderboard: its experiments sorted by cross-validation score (`tandem leaderboard RUN`).

What FLAML's and AutoGluon's users look at after a search: every model tried, best first, with
what it is (family and the parameters that set it apart), how sure its score is (the spread of
its fold scores) and what it costs (seconds to fit and to predict one fold). The estimators'
`.leaderboard()` returns the same rows as a DataFrame.

It is read from the run folder alone: the ledger (`experiments.jsonl`, written at every step, so
a running or stopped run has a leaderboard too), `summary.json` for the delivered experiment and
each candidate's cached evaluation (`cache/<spec hash>.json`) for the fold timings, which are
kept there and not in the ledger. Nothing here loads LangGraph, pandas or scikit-learn at import
time: `tandem leaderboard` starts as fast as `tandem runs`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict

from tandem.run_listing import (
    finite_number,
    json_list,
    json_object,
    plain_number,
    read_json,
    read_ledger,
    run_path,
    table,
)

TOP_PARAMS = 4
"""Model parameters shown per row; the rest are in the ledger."""


class LeaderboardRow(TypedDict):
    """One experiment of a run, as `tandem leaderboard` prints it."""

    rank: int | None
    """1 for the best CV score; None for an experiment that has no score (failed or timed out)."""
    experiment: int
    family: str
    """The model family, or `ensemble(a+b)` for a blend of earlier experiments."""
    params: str
    """The model's parameters and the settings that differ from the defaults, e.g. `C=10, class_weight=balanced`."""
    metric: str
    """The run's primary metric."""
    cv: float | None
    """Mean of the fold scores on the primary metric."""
    cv_std: float | None
    """Standard deviation of the fold scores (the fold spread)."""
    fold_min: float | None
    fold_max: float | None
    folds: int
    """Fold scores behind the mean (folds times repeats)."""
    fit_seconds: float | None
    """Mean seconds to fit one fold's model (None when the run did not record it)."""
    predict_seconds: float | None
    """Mean seconds for one fold's model to predict its validation rows."""
    cv_seconds: float
    """Wall time of the whole cross-validation (folds run in parallel)."""
    status: str
    """ok, failed or timeout."""
    delivered: bool
    """The experiment the run delivered (small data may deliver a simpler one than the best)."""
    proposal: str


def leaderboard(run_id: str, runs_dir: str | Path | None = None) -> list[LeaderboardRow]:
    """The experiments of a run, best CV score first, unscored experiments last (by id)."""
    return leaderboard_of_folder(run_path(run_id, runs_dir))


def leaderboard_of_folder(folder: Path) -> list[LeaderboardRow]:
    """`leaderboard` for a run folder given by its path."""
    ledger = read_ledger(folder)
    summary = read_json(folder / "summary.json")
    task = json_object(summary).get("task")
    scored = [r for r in ledger if r.get("status") == "ok" and finite_number(r.get("primary")) is not None]
    metric = _primary_metric(task, scored)
    higher = _greater_is_better(task, metric)
    delivered = json_object(json_object(summary).get("best")).get("experiment_id")
    order = sorted(scored, key=lambda r: ((-1 if higher else 1) * float(r["primary"]), int(r["id"])))
    scored_ids = {int(r["id"]) for r in scored}
    rest = sorted((r for r in ledger if int(r["id"]) not in scored_ids), key=lambda r: int(r["id"]))
    ranks = {int(r["id"]): i + 1 for i, r in enumerate(order)}
    return [_row(folder, r, metric, ranks.get(int(r["id"])), delivered) for r in [*order, *rest]]


def _row(folder: Path, record: dict[str, Any], metric: str, rank: int | None, delivered: Any) -> LeaderboardRow:
    scores = json_list(json_object(record.get("fold_scores")).get(metric))
    folds = [float(v) for v in scores if finite_number(v) is not None]
    timing = _timing(folder, record.get("spec_hash"))
    family, params = describe_spec(record.get("spec"))
    return LeaderboardRow(
        rank=rank,
        experiment=int(record["id"]),
        family=family,
        params=params,
        metric=metric,
        cv=finite_number(record.get("primary")) if rank is not None else None,
        cv_std=finite_number(json_object(record.get("cv_std")).get(metric)) if rank is not None else None,
        fold_min=min(folds) if folds else None,
        fold_max=max(folds) if folds else None,
        folds=len(folds),
        fit_seconds=finite_number(timing.get("fold_fit_seconds")),
        predict_seconds=finite_number(timing.get("fold_predict_seconds")),
        cv_seconds=finite_number(record.get("fit_seconds")) or 0.0,
        status=str(record.get("status") or "?"),
        delivered=record.get("id") == delivered,
        proposal=str(record.get("proposal") or ""),
    )


def describe_spec(spec: Any) -> tuple[str, str]:
    """(family, key parameters) of a spec as the ledger stores it (plain JSON)."""
    if not isinstance(spec, dict):
        return "–", ""
    if spec.get("kind") == "ensemble" or "members" in spec:
        models = [json_object(json_object(m).get("model")) for m in json_list(spec.get("members"))]
        members = [str(model.get("family", "?")) for model in models]
        ids = json_list(spec.get("member_ids"))
        parts = [f"method={spec.get('method', 'voting')}"]
        if ids:
            parts.append("members=" + "+".join(f"#{i}" for i in ids))
        if json_list(spec.get("weights")):
            parts.append("weights=" + "/".join(_short(w) for w in spec["weights"]))
        return f"ensemble({'+'.join(members)})", ", ".join(parts)
    model = json_object(spec.get("model"))
    params = [f"{k}={_short(v)}" for k, v in sorted(json_object(model.get("params")).items())]
    shown = params[:TOP_PARAMS] + ([f"+{len(params) - TOP_PARAMS} more"] if len(params) > TOP_PARAMS else [])
    settings = {
        "class_weight": spec.get("class_weight", "none"),
        "target": spec.get("target_transform", "none"),
        "threshold": spec.get("threshold", "default"),
    }
    shown += [f"{k}={_short(v)}" for k, v in settings.items() if v not in ("none", "default", None)]
    defaults = _preprocessing_defaults()
    shown += [
        f"{k}={_short(v)}" for k, v in sorted(json_object(spec.get("preprocessing")).items()) if defaults.get(k, v) != v
    ]
    if json_list(spec.get("features")):
        shown.append(f"features+{len(spec['features'])}")
    if isinstance(spec.get("row_filter"), dict):
        shown.append(f"row_filter={spec['row_filter'].get('method', '?')}")
    if isinstance(spec.get("bagging"), dict):
        bag = spec["bagging"]
        shown.append(f"bagged={bag.get('folds', '?')}x{bag.get('repeats', 1)}")
    return str(model.get("family", "?")), ", ".join(shown)


@lru_cache(maxsize=1)
def _preprocessing_defaults() -> dict[str, Any]:
    """The preprocessing a spec has unless it says otherwise (a row shows only what differs)."""
    from tandem.tools.spec import Preprocessing  # pydantic: only when a leaderboard is made, for CLI start-up time

    return Preprocessing().model_dump(mode="json")


def leaderboard_text(rows: list[LeaderboardRow], run_id: str) -> str:
    """`tandem leaderboard RUN`: one line per experiment, best first."""
    if not rows:
        return f"run {run_id} has no experiments yet"
    metric = rows[0]["metric"]
    body = [
        [
            str(r["rank"]) if r["rank"] is not None else "–",
            f"#{r['experiment']}",
            r["family"],
            r["params"],
            plain_number(r["cv"]) if r["rank"] is not None else r["status"],
            plain_number(r["cv_std"]),
            f"{plain_number(r['fold_min'])}–{plain_number(r['fold_max'])}" if r["folds"] else "–",
            _seconds(r["fit_seconds"]),
            _seconds(r["predict_seconds"]),
            "delivered" if r["delivered"] else "",
        ]
        for r in rows
    ]
    header = ["rank", "exp", "family", "key parameters", f"CV {metric}", "± std", "fold range"]
    header += ["fit s", "predict s", ""]
    note = (
        f"run {run_id}: {sum(r['rank'] is not None for r in rows)} scored experiments of {len(rows)}, "
        f"sorted by mean CV {metric}; fit s and predict s are per fold"
    )
    return note + "\n\n" + table(header, body, right={0, 4, 5, 7, 8})


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _primary_metric(task: Any, scored: list[dict[str, Any]]) -> str:
    """The run's primary metric: the summary's, else the first of a scored experiment's CV metrics
    (the task lists its metrics primary first)."""
    if isinstance(task, dict) and task.get("primary_metric"):
        return str(task["primary_metric"])
    for record in scored:
        cv = json_object(record.get("cv"))
        if cv:
            return str(next(iter(cv)))
    return "score"


def _greater_is_better(task: Any, metric: str) -> bool:
    if isinstance(task, dict) and isinstance(task.get("greater_is_better"), bool):
        return bool(task["greater_is_better"])
    from tandem.tools.metrics import METRICS  # scikit-learn: only for a run not yet delivered, CLI start-up time

    known = METRICS.get(metric)
    return known.greater_is_better if known is not None else True


def _timing(folder: Path, spec_hash: Any) -> dict[str, Any]:
    """The fold timings of a candidate, from its cached evaluation (empty when not recorded)."""
    if not isinstance(spec_hash, str) or not spec_hash.isalnum():
        return {}
    found = read_json(folder / "cache" / f"{spec_hash}.json")
    return found if isinstance(found, dict) else {}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 24 else text[:23] + "…"
