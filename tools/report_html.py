"""The run report as one self-contained HTML file: plots inline as SVG, no scripts, no links out.

A single file opens anywhere (a browser offline, an e-mail attachment, a CI artifact) and keeps
working when moved. Like `report.md`, it is rendered from values (the summary, the ledger, the
reward events and the model insight, as the nodes hold them or as `summary.json`,
`experiments.jsonl`, `rewards.jsonl` and `model_insight.json` keep them), so any run can be
reported again.

Two pages share their sections:

- `render_progress_html`, written after every experiment: what the search has seen, so a
  running or killed run has a report. The incumbent as a pipeline, plots from its out-of-fold
  predictions on the development rows, the search curve, the leaderboard and the ledger. No
  holdout number exists yet, and none is shown.
- `render_html`, written at delivery: the holdout table, the delivered model as a pipeline and
  why it was chosen (the selection rule in words), its holdout plots (confusion matrix, ROC,
  precision-recall and calibration for a classifier; predicted vs actual and residuals for a
  regressor) and permutation importance, then the search curve, the leaderboard and the ledger.

Rewards and tokens come last, folded away when they are all zero (offline agents spend no
tokens), since they describe the agents, not the model.
"""

from __future__ import annotations

import html
import io
import json
import re
from collections import defaultdict
from collections.abc import Mapping
from functools import lru_cache
from itertools import accumulate
from typing import Any, cast

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tandem.tools.model_insight import (
    ClassifierPlots,
    Importance,
    ModelInsight,
    RegressionPlots,
    describe_spec,
    key_params,
)
from tandem.tools.report import _fmt

AGENTS = ("scientist", "executor")
PART_COLOURS = {
    "gain": "tab:green",
    "mismatch": "tab:orange",
    "failure": "tab:red",
    "insignificant": "tab:olive",
    "invalid": "tab:brown",
    "tokens": "tab:purple",
}
IMPORTANCE_SHOWN = 20
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2328; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; }
h3 { margin: 1.2rem 0 .3rem; font-size: 1.05rem; }
.muted { color: #59636e; } .plot svg { max-width: 100%; height: auto; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.plots .plot { flex: 1 1 480px; min-width: 0; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eef9ee; } .cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: .6rem 1rem; min-width: 12rem; }
.card b { font-size: 1.3rem; display: block; }
.banner { border: 1px solid #d4a72c; background: #fff8c5; border-radius: 6px; padding: .6rem 1rem; }
details { margin-top: 2.2rem; } details > summary { cursor: pointer; font-size: 1.3rem; font-weight: bold;
       border-bottom: 1px solid #d0d7de; }
"""


def _svg(fig: Figure) -> str:
    """A figure as inline SVG markup (text kept as text, so it stays small and searchable).

    Every figure is made with `layout="tight"`, which fits it to its canvas as it is drawn; a
    second fitting at save time (`bbox_inches="tight"`) drew each plot twice, a quarter of what a
    report's plots cost."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)  # RDF namespaces only, no content


def figure_png(fig: Figure) -> bytes:
    """A figure as PNG bytes: the Markdown report shows the same figures as the HTML one."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _plot(name: str, fig: Figure) -> str:
    """One plot, named by a `data-plot` attribute (what the browser test looks for)."""
    return f"<div class='plot' data-plot='{name}'>{_svg(fig)}</div>"


# ---------------------------------------------------------------------------------------------
# The search: CV scores, rewards, tokens
# ---------------------------------------------------------------------------------------------


def cv_figure(experiments: list[dict[str, Any]], metric: str, greater_is_better: bool) -> Figure:
    """Every fold score (dots), the mean ± fold std (bars), the incumbent line, failures (x)."""
    fig = Figure(figsize=(9, 4), layout="tight")
    ax = fig.subplots()
    ok = [e for e in experiments if e["status"] == "ok" and e["cv"].get(metric) is not None]
    for e in ok:
        folds = [s for s in e.get("fold_scores", {}).get(metric, []) if s is not None]
        ax.scatter([e["id"]] * len(folds), folds, s=12, color="tab:blue", alpha=0.4, linewidths=0)
    ax.errorbar(
        [e["id"] for e in ok],
        [e["cv"][metric] for e in ok],
        yerr=[e["cv_std"].get(metric) or 0.0 for e in ok],
        fmt="o",
        color="tab:blue",
        capsize=3,
        label="candidate: mean ± fold std (dots: folds)",
    )
    by_id = {e["id"]: e for e in experiments}
    best = [by_id[e.get("incumbent_after", e["id"])]["cv"].get(metric) for e in experiments]
    ax.step([e["id"] for e in experiments], best, where="post", color="tab:orange", lw=2, label="incumbent")
    failed = [e["id"] for e in experiments if e["status"] != "ok"]
    if failed and ok:
        low = min(e["cv"][metric] for e in ok) if greater_is_better else max(e["cv"][metric] for e in ok)
        ax.scatter(failed, [low] * len(failed), marker="x", color="tab:red", label="failed / timed out")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("experiment (iteration)")
    ax.set_ylabel(f"CV {metric} ({'higher' if greater_is_better else 'lower'} is better)")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def reward_figure(events: list[dict[str, Any]]) -> Figure:
    """For each agent: the cumulative total and the cumulative value of each of its parts."""
    fig = Figure(figsize=(11, 3.8), layout="tight")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, agent in zip(axes, AGENTS, strict=True):
        mine = sorted((e for e in events if e["agent"] == agent), key=lambda e: e["experiment_id"])
        ids = [e["experiment_id"] for e in mine]
        parts = sorted({p for e in mine for p in e["parts"]})
        for part in parts:
            values = list(accumulate(e["parts"].get(part, 0.0) for e in mine))
            if any(values):
                ax.plot(ids, values, lw=1.2, ls="--", color=PART_COLOURS.get(part), label=part)
        ax.plot(ids, list(accumulate(e["total"] for e in mine)), lw=2.2, color="black", marker=".", label="total")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(agent)
        ax.set_xlabel("experiment")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if mine:
            ax.legend(loc="best", fontsize="small")
    axes[0].set_ylabel("cumulative reward")
    return fig


def token_figure(experiments: list[dict[str, Any]]) -> Figure:
    """Input and output tokens each agent spent, per experiment and in total."""
    fig = Figure(figsize=(11, 3.4), layout="tight")
    per_step, total = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    ids = [e["id"] for e in experiments if e["id"] > 0]
    sums: dict[str, dict[str, int]] = {a: {"input": 0, "output": 0} for a in AGENTS}
    width = 0.4
    for k, (agent, colour) in enumerate(zip(AGENTS, ("tab:green", "tab:purple"), strict=True)):
        used = [(e.get("tokens") or {}).get(agent) or {"input": 0, "output": 0} for e in experiments if e["id"] > 0]
        inputs, outputs = [u["input"] for u in used], [u["output"] for u in used]
        xs = [i + (k - 0.5) * width for i in ids]
        per_step.bar(xs, inputs, width, color=colour, alpha=0.55, label=f"{agent} input")
        per_step.bar(xs, outputs, width, bottom=inputs, color=colour, label=f"{agent} output")
        sums[agent] = {"input": sum(inputs), "output": sum(outputs)}
    per_step.set_xlabel("experiment")
    per_step.set_ylabel("tokens")
    per_step.margins(y=0.25)
    per_step.legend(loc="upper left", fontsize="small", ncols=4)
    per_step.grid(alpha=0.3, axis="y")
    total.bar(AGENTS, [sums[a]["input"] for a in AGENTS], color="grey", alpha=0.55, label="input")
    total.bar(
        AGENTS,
        [sums[a]["output"] for a in AGENTS],
        bottom=[sums[a]["input"] for a in AGENTS],
        color="grey",
        label="output",
    )
    total.set_title("whole run")
    total.legend(loc="best", fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# The model: classifier and regressor plots, permutation importance
# ---------------------------------------------------------------------------------------------


def confusion_figure(plots: ClassifierPlots) -> Figure:
    """Counts of true (rows) against predicted (columns) classes, shaded by the share of each row."""
    n = len(plots["classes"])
    side = min(10.0, max(3.6, 0.7 * n + 2.0))
    fig = Figure(figsize=(side, side), layout="tight")
    ax = fig.subplots()
    counts = np.asarray(plots["confusion"], dtype=float).reshape(n, n)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    # vector cells (pcolormesh), not an embedded raster image: the page names no data: URI
    ax.pcolormesh(np.arange(n + 1) - 0.5, np.arange(n + 1) - 0.5, shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_aspect("equal")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}\n{shares[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize="small" if n <= 8 else "x-small",
                color="white" if shares[i, j] > 0.55 else "black",
            )
    ax.set_xticks(range(n), plots["classes"], rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), plots["classes"])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix (count, share of the true class)", fontsize="medium")
    return fig


def roc_pr_figure(plots: ClassifierPlots) -> Figure:
    """ROC and precision-recall curves side by side (one per class, one-vs-rest, for multiclass)."""
    fig = Figure(figsize=(10, 4.2), layout="tight")
    roc, pr = fig.subplots(1, 2)
    for curve in plots["roc"]:
        roc.plot(curve["x"], curve["y"], lw=1.8, label=f"{curve['label']} (AUC {curve['area']:.3f})")
    roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    roc.set_xlabel("false positive rate")
    roc.set_ylabel("true positive rate")
    roc.set_title("ROC" + (" (one-vs-rest)" if len(plots["roc"]) > 1 else ""), fontsize="medium")
    for curve in plots["pr"]:
        pr.plot(curve["x"], curve["y"], lw=1.8, label=f"{curve['label']} (AP {curve['area']:.3f})")
        if len(plots["pr"]) == 1:
            pr.axhline(curve["prevalence"], ls="--", color="grey", lw=1, label=f"chance ({curve['prevalence']:.2f})")
    pr.set_xlabel("recall")
    pr.set_ylabel("precision")
    pr.set_title("precision-recall" + (" (one-vs-rest)" if len(plots["pr"]) > 1 else ""), fontsize="medium")
    for ax in (roc, pr):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is roc else "lower left", fontsize="x-small")
    return fig


def calibration_figure(plots: ClassifierPlots) -> Figure:
    """Observed frequency against mean predicted probability per bin, and how many rows each bin holds."""
    fig = Figure(figsize=(5.4, 5.2), layout="tight")
    curve_ax, count_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    curve_ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    for curve in plots["calibration"]:
        (line,) = curve_ax.plot(curve["predicted"], curve["observed"], marker="o", ms=4, lw=1.5, label=curve["label"])
        count_ax.plot(curve["predicted"], curve["count"], marker=".", lw=1, color=line.get_color())
    curve_ax.set_ylabel("observed frequency")
    curve_ax.set_title("calibration", fontsize="medium")
    curve_ax.set_xlim(-0.02, 1.02)
    curve_ax.set_ylim(-0.02, 1.02)
    curve_ax.legend(loc="upper left", fontsize="x-small")
    curve_ax.grid(alpha=0.3)
    count_ax.set_xlabel("mean predicted probability (10 bins)")
    count_ax.set_ylabel("rows")
    count_ax.grid(alpha=0.3)
    return fig


def regression_figure(plots: RegressionPlots) -> Figure:
    """Predicted against actual values (the diagonal is perfect) and residuals against predictions."""
    fig = Figure(figsize=(10, 4.2), layout="tight")
    scatter, residual = fig.subplots(1, 2)
    actual, predicted = np.asarray(plots["actual"]), np.asarray(plots["predicted"])
    scatter.scatter(actual, predicted, s=10, alpha=0.5, color="tab:blue", linewidths=0)
    if len(actual):
        low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
        scatter.plot([low, high], [low, high], ls="--", color="grey", lw=1, label="predicted = actual")
        scatter.legend(loc="upper left", fontsize="small")
    scatter.set_xlabel("actual")
    scatter.set_ylabel("predicted")
    scatter.set_title("predicted vs actual", fontsize="medium")
    residual.scatter(predicted, actual - predicted, s=10, alpha=0.5, color="tab:purple", linewidths=0)
    residual.axhline(0, color="grey", ls="--", lw=1)
    residual.set_xlabel("predicted")
    residual.set_ylabel("residual (actual − predicted)")
    residual.set_title("residuals", fontsize="medium")
    for ax in (scatter, residual):
        ax.grid(alpha=0.3)
    return fig


def _sampled_columns(importance: Importance) -> str:
    """Says so when the time bound let only a sample of the columns be measured."""
    read, measured = importance.get("columns_read"), len(importance["features"])
    if not isinstance(read, int) or measured >= read:  # an older (or edited) insight file: nothing to say
        return ""
    return f" The time bound allowed {measured:,} of the {read:,} columns the model reads: a seeded sample."


def importance_figure(importance: Importance) -> Figure:
    """Mean drop of the metric when each column is shuffled (bars) and its spread over repeats."""
    shown = importance["features"][:IMPORTANCE_SHOWN][::-1]
    fig = Figure(figsize=(8, max(2.0, 0.32 * len(shown) + 1.2)), layout="tight")
    ax = fig.subplots()
    ax.barh(
        [f["column"] for f in shown],
        [f["mean"] for f in shown],
        xerr=[f["std"] for f in shown],
        color=["tab:green" if f["mean"] > 0 else "tab:grey" for f in shown],
        capsize=2,
    )
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"drop in {importance['metric']} when the column is shuffled (worse →)")
    ax.grid(alpha=0.3, axis="x")
    return fig


def _insight_section(insight: ModelInsight | None) -> list[str]:
    """The plots of one model, from the holdout (delivered) or from out-of-fold predictions."""
    if insight is None:
        return ["<p class='muted'>No predictions to plot yet (the incumbent's out-of-fold predictions are not "
                "cached).</p>"]  # fmt: skip
    return list(_insight_html(json.dumps(insight, sort_keys=True)))


@lru_cache(maxsize=4)
def _insight_html(insight_json: str) -> tuple[str, ...]:
    """Drawn once per model and process: the progress page is rewritten after every experiment,
    and its incumbent changes far less often."""
    insight = cast(ModelInsight, json.loads(insight_json))
    e = html.escape
    where = (
        f"the {insight['rows']} holdout rows, scored once at delivery"
        if insight["source"] == "holdout"
        else f"out-of-fold predictions of experiment #{insight['experiment_id']} on {insight['rows']} development "
        "rows (each row predicted by the model of the fold that left it out; the holdout stays untouched until "
        "delivery)"
    )
    parts = [f"<p class='muted'>From {e(where)}.</p>"]
    plots = insight["plots"]
    if plots["kind"] == "classifier":
        labels = (
            "the most probable class"
            if plots["labels_from"] != "model"
            else "the model's own predictions (a tuned decision threshold included)"
            if len(plots["roc"]) == 1
            else "the model's own predictions"
        )
        parts.append("<div class='plots'>")
        parts.append(_plot("confusion", confusion_figure(plots)))
        if plots["calibration"]:
            parts.append(_plot("calibration", calibration_figure(plots)))
        parts.append("</div>")
        parts.append(f"<p class='muted'>Predicted classes are {e(labels)}.</p>")
        if plots["roc"]:
            parts.append(_plot("roc-pr", roc_pr_figure(plots)))
        else:
            parts.append("<p class='muted'>No ROC or precision-recall curve: the model gives no probabilities, or "
                         "a single class occurs in these rows.</p>")  # fmt: skip
    else:
        shown = (
            ""
            if plots["shown"] == insight["rows"]
            else f" ({plots['shown']} of {insight['rows']} rows drawn, a seeded sample)"
        )
        parts.append(_plot("regression", regression_figure(plots)))
        if shown:
            parts.append(f"<p class='muted'>{e(shown.strip())}</p>")
    importance = insight.get("importance")
    if importance and importance["features"]:
        metric = importance["metric"]
        parts += [
            "<h3>Permutation feature importance (holdout)</h3>",
            f"<p class='muted'>How much holdout {e(metric)} worsens when one input column's values are shuffled "
            f"({importance['repeats']} repeat{'s' if importance['repeats'] != 1 else ''} on "
            f"{importance['rows']} rows; bars: mean, whiskers: spread over repeats). Only the columns the model "
            "reads are shown; near zero means the model does not rely on the column, below zero that shuffling "
            f"it helped by chance.{_sampled_columns(importance)}</p>",
            _plot("importance", importance_figure(importance)),
        ]
    return tuple(parts)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def _table(
    header: list[str], rows: list[list[Any]], numeric: set[int] | frozenset[int] = frozenset(), best: int | None = None
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(_fmt(v))}</td>' if i in numeric else f"<td>{html.escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        mark = ' class="best"' if best is not None and row[0] == best else ""
        body.append(f"<tr{mark}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _pipeline_table(spec: Mapping[str, Any] | None) -> str:
    if not spec:
        return "<p class='muted'>No spec recorded.</p>"
    return _table(["step", "what"], [[s["step"], s["what"]] for s in describe_spec(spec)])


def leaderboard_rows(
    experiments: list[dict[str, Any]], metric: str, greater_is_better: bool, *, delivered: int | None, incumbent: int
) -> list[list[Any]]:
    """Every experiment, best mean CV score first (failures last, by id): rank, id, family, key
    parameters, mean, fold std, number of folds, fit seconds and a note."""
    scored = [x for x in experiments if x["status"] == "ok" and x["cv"].get(metric) is not None]
    scored.sort(key=lambda x: (-x["cv"][metric] if greater_is_better else x["cv"][metric], x["id"]))
    rest = [x for x in experiments if x not in scored]
    rows = []
    for rank, x in enumerate([*scored, *rest], start=1):
        family, params = key_params(x.get("spec"))
        notes = []
        if x["id"] == delivered:
            notes.append("delivered")
        if x["id"] == incumbent:
            notes.append("incumbent")
        if x["status"] != "ok":
            notes.append(f"{x['status']}: {x.get('error') or ''}".strip(": "))
        folds = len([s for s in x.get("fold_scores", {}).get(metric, []) if s is not None])
        rows.append(
            [
                x["id"],
                rank if x in scored else "–",
                family,
                params,
                x["cv"].get(metric),
                x["cv_std"].get(metric),
                folds or "–",
                f"{x['fit_seconds']:.1f}" if isinstance(x.get("fit_seconds"), int | float) else "–",
                "; ".join(notes),
            ]
        )
    return rows


def _leaderboard(
    experiments: list[dict[str, Any]], task: Mapping[str, Any], *, delivered: int | None, incumbent: int
) -> str:
    metric = task["primary_metric"]
    rows = leaderboard_rows(experiments, metric, task["greater_is_better"], delivered=delivered, incumbent=incumbent)
    return _table(
        ["#", "rank", "family", "key parameters", f"CV {metric}", "fold std", "folds", "fit s", "note"],
        rows,
        numeric={4, 5, 6, 7},
        best=delivered if delivered is not None else incumbent,
    ).replace("<table>", "<table class='leaderboard'>", 1)


def _ledger(experiments: list[dict[str, Any]], metric: str, best: int) -> str:
    """Every experiment as the search made it: the idea, its base, the full proposal (never cut)."""
    rows = [
        [
            x["id"],
            x.get("move") or "",
            "" if x.get("base_experiment") is None else f"#{x['base_experiment']}",
            x["proposal"],
            x["status"],
            x["cv"].get(metric),
            x.get("gain"),
            "yes" if x.get("significant") else "",
            x.get("fidelity"),
            " / ".join(_fmt((x.get("rewards") or {}).get(a)) for a in AGENTS),
        ]
        for x in experiments
    ]
    return _table(
        ["#", "move", "from", "proposal", "status", f"CV {metric}", "gain", "significant", "fidelity", "reward S / E"],
        rows,
        numeric={5, 6, 8},
        best=best,
    )


# ---------------------------------------------------------------------------------------------
# Rewards and tokens: folded away when all zero
# ---------------------------------------------------------------------------------------------


def _reward_parts(events: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    totals: dict[str, float] = defaultdict(float)
    parts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for event in events:
        totals[event["agent"]] += event["total"]
        for name, value in event["parts"].items():
            parts[event["agent"]][name] += value
    return dict(totals), {a: dict(p) for a, p in parts.items()}


def _agent_sections(
    rewards: Mapping[str, Any],
    reward_parts: Mapping[str, Mapping[str, Any]],
    tokens: Mapping[str, Mapping[str, int]],
    experiments: list[dict[str, Any]],
    events: list[dict[str, Any]],
) -> list[str]:
    reward_rows = [[a, rewards.get(a), *(reward_parts.get(a, {}).get(p) for p in PART_COLOURS)] for a in AGENTS]
    token_rows = [[a, tokens.get(a, {}).get("input", 0), tokens.get(a, {}).get("output", 0)] for a in AGENTS]
    any_reward = any(v for row in reward_rows for v in row[1:] if isinstance(v, int | float))
    any_token = any(r[1] or r[2] for r in token_rows)
    return [
        f"<details class='rewards'{' open' if any_reward else ''}><summary>Rewards"
        f"{'' if any_reward else ' (all zero)'}</summary>",
        "<p class='muted'>What each agent earned, not what the model is: cumulative reward per agent (black) and "
        "the parts it is made of: gain (scaled by fidelity for the Executor), mismatch (unfaithful "
        "implementation), failure, insignificant idea, invalid proposal, and the token penalty.</p>",
        _plot("rewards", reward_figure(events)),
        _table(["agent", "total", *PART_COLOURS], reward_rows, numeric=set(range(1, 2 + len(PART_COLOURS)))),
        "</details>",
        f"<details class='tokens'{' open' if any_token else ''}><summary>Tokens"
        f"{'' if any_token else ' (none spent)'}</summary>",
        _plot("tokens", token_figure(experiments))
        if any_token
        else "<p class='muted'>Heuristic agents call no API: no tokens were spent.</p>",
        _table(["agent", "input", "output"], token_rows, numeric={1, 2}),
        "</details>",
    ]


# ---------------------------------------------------------------------------------------------
# The pages
# ---------------------------------------------------------------------------------------------


def _page_start(title: str) -> list[str]:
    return [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
    ]


def _task_line(task: Mapping[str, Any], who: str) -> str:
    e = html.escape
    return (
        f"Predicting <b>{e(str(task['target']))}</b> ({e(task['task_type'])}) from "
        f"<code>{e(task['csv_path'])}</code>: {task['n_dev_rows']} development rows in {task['folds']} folds, "
        f"{task['n_holdout_rows']} holdout rows ({e(task['holdout_source'])}). "
        f"Primary metric <b>{e(task['primary_metric'])}</b> "
        f"({'higher' if task['greater_is_better'] else 'lower'} is better). Agents: {e(who)}."
    )


def _who(agents: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{a}: {v.get('model') or v.get('kind')}" for a, v in agents.items()) if agents else "heuristic"


def _why_chosen(summary: Mapping[str, Any], experiments: list[dict[str, Any]]) -> str:
    """The selection rule in words, with the numbers behind it."""
    e = html.escape
    metric = summary["task"]["primary_metric"]
    best, incumbent = summary["best"], summary.get("incumbent", summary["best"]["experiment_id"])
    by_id = {x["id"]: x for x in experiments}
    rule = summary.get("selection") or "the best mean CV score"
    delivered = best["experiment_id"]

    def score(x: Mapping[str, Any]) -> str:
        return f"{_fmt(x['cv'].get(metric))} ± {_fmt(x['cv_std'].get(metric))}"

    text = f"Experiment #{delivered} was delivered: {e(rule)}. Its CV {e(metric)} is {e(score(best))}."
    if incumbent != delivered and incumbent in by_id:
        top = by_id[incumbent]
        top_family, _ = key_params(top.get("spec"))
        family, _ = key_params(best.get("spec"))
        text += (
            f" The search's incumbent is #{incumbent} ({e(top_family)}), CV {e(score(top))}. On small data "
            "differences in CV score are mostly noise and the best of many candidates scored on the same folds is "
            "picked optimistically (the winner's curse), so tandem delivers a blend instead: Caruana's greedy "
            "ensemble selection, with replacement, on the out-of-fold predictions of the best single pipelines. "
            "Its weights were chosen on those same predictions, so its CV score flatters it a little; the "
            f"holdout score does not. #{delivered} ({e(family)}) is that blend."
        )
    return f"<p>{text}</p>"


def render_html(
    summary: dict[str, Any],
    experiments: list[dict[str, Any]],
    events: list[dict[str, Any]],
    insight: ModelInsight | None = None,
) -> str:
    """The report of a delivered run; `insight` is the delivered model's holdout insight."""
    task, base, best = summary["task"], summary["baseline"], summary["best"]
    metric = task["primary_metric"]
    e = html.escape
    holdout_rows = [
        [m, base["cv"].get(m), best["cv"].get(m), base["holdout"].get(m), best["holdout"].get(m)]
        for m in task["metrics"]
    ]
    gain = _delta(base["holdout"].get(metric), best["holdout"].get(metric))
    feedback = summary.get("feedback") or []
    delivered = best["experiment_id"]
    incumbent = summary.get("incumbent", delivered)
    parts = [
        *_page_start(f"tandem run {summary['run_id']}"),
        f"<h1>tandem run <code>{e(summary['run_id'])}</code></h1>",
        f"<p class='muted'>{_task_line(task, _who(summary.get('agents')))} "
        f"Stopped after {summary['iterations']} experiments: {e(str(summary['stop_reason']))}.</p>",
        "<div class='cards'>",
        _card(f"holdout {metric}, delivered #{delivered}", best["holdout"].get(metric)),
        _card(f"holdout {metric}, baseline #0", base["holdout"].get(metric)),
        _card("holdout gain", gain),
        _card(f"CV {metric}, delivered #{delivered}", best["cv"].get(metric)),
        "</div>",
        "<h2>Holdout: baseline vs delivered</h2>",
        "<p class='muted'>Scored once, at delivery; no agent and no decision ever saw these numbers.</p>",
        _table(
            ["metric", "CV baseline", f"CV delivered #{delivered}", "holdout baseline", "holdout delivered"],
            holdout_rows,
            numeric={1, 2, 3, 4},
        ),
        f"<h2>The delivered model: experiment #{delivered}</h2>",
        _why_chosen(summary, experiments),
        "<p class='muted'>The pipeline, in the order it is applied to a row:</p>",
        _pipeline_table(best.get("spec")),
        f"<p class='muted'>The change that produced it: {e(best['proposal'])}</p>",
        "<h2>How the delivered model predicts</h2>",
        *_insight_section(insight),
        *_search_sections(task, experiments, delivered=delivered, incumbent=incumbent),
    ]
    if feedback:
        parts += [
            "<h2>Human feedback at approval gates</h2>",
            _table(
                ["after experiments", "rejected", "what", "reason"],
                [[f["iteration"], f["kind"], f["proposal"], f["reason"]] for f in feedback],
            ),
        ]
    parts += _notes_section(task)
    parts += _agent_sections(
        summary["rewards"], summary.get("reward_parts", {}), summary["tokens"], experiments, events
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def render_progress_html(
    task: Mapping[str, Any],
    experiments: list[dict[str, Any]],
    events: list[dict[str, Any]],
    *,
    run_id: str,
    incumbent: int,
    insight: ModelInsight | None = None,
    agents: Mapping[str, Any] | None = None,
) -> str:
    """The report of a run that has not delivered: what the search has seen after the last
    experiment. `insight` comes from the incumbent's out-of-fold predictions; nothing here
    comes from the holdout."""
    metric = task["primary_metric"]
    e = html.escape
    by_id = {x["id"]: x for x in experiments}
    top = by_id[incumbent]
    last = experiments[-1]["id"]
    totals, reward_parts = _reward_parts(events)
    tokens: dict[str, dict[str, int]] = {a: {"input": 0, "output": 0} for a in AGENTS}
    for x in experiments:
        for agent, used in (x.get("tokens") or {}).items():
            if agent in tokens and used:
                tokens[agent]["input"] += used.get("input", 0)
                tokens[agent]["output"] += used.get("output", 0)
    parts = [
        *_page_start(f"tandem run {run_id} (searching)"),
        f"<h1>tandem run <code>{e(run_id)}</code></h1>",
        f"<p class='muted'>{_task_line(task, _who(agents))}</p>",
        f"<p class='banner'>Not delivered yet: this page was written after experiment #{last} and is rewritten "
        "after every experiment. The run is still searching, or it stopped before delivery "
        f"(<code>tandem resume {e(run_id)}</code> continues it). The holdout is untouched until delivery, so no "
        "holdout score exists yet.</p>",
        "<div class='cards'>",
        _card("experiments so far", len(experiments)),
        _card(f"CV {metric}, incumbent #{incumbent}", top["cv"].get(metric)),
        _card(f"CV {metric}, baseline #0", by_id[0]["cv"].get(metric) if 0 in by_id else None),
        "</div>",
        f"<h2>The incumbent: experiment #{incumbent}</h2>",
        f"<p>The experiment the search keeps as its best (a candidate replaces it only when it scores better "
        f"beyond a near-tie): CV {e(metric)} {_fmt(top['cv'].get(metric))} ± {_fmt(top['cv_std'].get(metric))}. "
        "At delivery, on small data, a blend of the best single pipelines chosen by Caruana's ensemble "
        "selection is delivered instead, when one is chosen.</p>",
        _pipeline_table(top.get("spec")),
        "<h2>How the incumbent predicts (out of fold)</h2>",
        *_insight_section(insight),
        *_search_sections(task, experiments, delivered=None, incumbent=incumbent),
    ]
    parts += _notes_section(task)
    parts += _agent_sections(totals, reward_parts, tokens, experiments, events)
    parts.append("</body></html>")
    return "\n".join(parts)


def _search_sections(
    task: Mapping[str, Any], experiments: list[dict[str, Any]], *, delivered: int | None, incumbent: int
) -> list[str]:
    """The search as both pages show it: its curve, the leaderboard and the ledger, with the
    delivered model (or, before delivery, the incumbent) marked in the ledger."""
    metric = task["primary_metric"]
    return [
        "<h2>The search: cross-validation score per experiment</h2>",
        _plot("search", cv_figure(experiments, metric, task["greater_is_better"])),
        "<h2>Leaderboard</h2>",
        "<p class='muted'>Every experiment, best mean CV score first; fold std is the spread over the folds.</p>",
        _leaderboard(experiments, task, delivered=delivered, incumbent=incumbent),
        "<h2>Experiments</h2>",
        _ledger(experiments, metric, incumbent if delivered is None else delivered),
    ]


def _notes_section(task: Mapping[str, Any]) -> list[str]:
    """What reading the data noted (dropped rows, columns read as numbers…), when it noted anything."""
    notes = task.get("notes") or []
    return ["<h2>Notes on the data</h2><ul>", *(f"<li>{html.escape(n)}</li>" for n in notes), "</ul>"] if notes else []


def _card(label: str, value: Any) -> str:
    return f"<div class='card'><span class='muted'>{html.escape(label)}</span><b>{html.escape(_fmt(value))}</b></div>"


def _delta(before: Any, after: Any) -> float | None:
    if isinstance(before, float) and isinstance(after, float):
        return after - before
    return None
