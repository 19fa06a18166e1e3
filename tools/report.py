"""The run report: what was tried, what it scored, what each agent earned, and the honest holdout.

Rendered from values, not files: the summary, the ledger and the reward events, as the deliver
node holds them (or as anyone reads them back from `summary.json`, `experiments.jsonl` and
`rewards.jsonl`, so an old or a copied run can be reported again without the graph). The
functions return the text and the PNG bytes; where they go is the caller's business.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)


def shorten(text: str, width: int = 120) -> str:
    """At most `width` characters, cut between words and marked with an ellipsis (never mid-word)."""
    return textwrap.shorten(text, width=width, placeholder=" …")


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def plot_scores(experiments: list[dict[str, Any]], metric: str) -> bytes:
    """CV score per experiment with its fold spread, and the incumbent line, as a PNG."""
    fig, ax = plt.subplots(figsize=(8, 4))
    ok = [e for e in experiments if e["status"] == "ok" and e["cv"].get(metric) is not None]
    ax.errorbar(
        [e["id"] for e in ok],
        [e["cv"][metric] for e in ok],
        yerr=[e["cv_std"].get(metric) or 0.0 for e in ok],
        fmt="o",
        color="tab:blue",
        alpha=0.7,
        capsize=3,
        label="candidate (mean ± fold std)",
    )
    by_id = {e["id"]: e for e in experiments}
    best = [by_id[e.get("incumbent_after", e["id"])]["cv"].get(metric) for e in experiments]
    ax.step([e["id"] for e in experiments], best, where="post", color="tab:orange", label="incumbent")
    failed = [e["id"] for e in experiments if e["status"] != "ok"]
    if failed and ok:
        ax.scatter(
            failed, [min(e["cv"][metric] for e in ok)] * len(failed), marker="x", color="tab:red", label="failed"
        )
    ax.set_xlabel("experiment")
    ax.set_ylabel(f"CV {metric}")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def plot_rewards(events: list[dict[str, Any]]) -> bytes:
    """Cumulative reward per agent over the experiments, as a PNG."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for agent, color in (("scientist", "tab:green"), ("executor", "tab:purple")):
        mine = [e for e in events if e["agent"] == agent]
        if mine:
            ax.plot(
                [e["experiment_id"] for e in mine],
                list(accumulate(e["total"] for e in mine)),
                marker=".",
                color=color,
                label=agent,
            )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("experiment")
    ax.set_ylabel("cumulative reward")
    if events:
        ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def render_report(summary: Mapping[str, Any], experiments: list[dict[str, Any]], *, images: Mapping[str, str]) -> str:
    """The Markdown report; `images` names the files of `plot_scores` ("scores") and
    `plot_rewards` ("rewards") relative to where the report is written."""
    task = summary["task"]
    metric = task["primary_metric"]
    base, best = summary["baseline"], summary["best"]
    lines = [
        f"# tandem run `{summary['run_id']}`",
        "",
        f"Predicting **{task['target']}** ({task['task_type']}) from `{task['csv_path']}`: "
        f"{task['n_dev_rows']} development rows in {task['folds']} folds, {task['n_holdout_rows']} holdout rows "
        f"({task['holdout_source']}). Primary metric: **{metric}** "
        f"({'higher' if task['greater_is_better'] else 'lower'} is better).",
        "",
        f"Stopped after {summary['iterations']} experiments because {summary['stop_reason']}.",
        "",
        "## Holdout: baseline vs delivered",
        "",
        "Scored once, at delivery; no agent and no decision ever saw these numbers.",
        "",
        "| metric | baseline (#0) | delivered (#{}) |".format(best["experiment_id"]),
        "|---|---|---|",
        *(f"| {m} | {_fmt(base['holdout'].get(m))} | {_fmt(best['holdout'].get(m))} |" for m in task["metrics"]),
        "",
        f"Delivered model: {best['proposal']}",
        "",
        "## Cross-validation score per experiment",
        "",
        f"![CV score per experiment]({images['scores']})",
        "",
        "## Rewards",
        "",
        f"![cumulative reward per agent]({images['rewards']})",
        "",
        "| agent | total | parts | tokens in / out |",
        "|---|---|---|---|",
    ]
    for agent in ("scientist", "executor"):
        parts = summary.get("reward_parts", {}).get(agent, {})
        tokens = summary["tokens"].get(agent, {})
        who = summary.get("agents", {}).get(agent, {})
        lines.append(
            f"| {agent}{' (' + str(who.get('model') or who.get('kind')) + ')' if who else ''} | "
            f"{_fmt(summary['rewards'].get(agent))} | "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in parts.items())
            + f" | {tokens.get('input', 0)} / {tokens.get('output', 0)} |"
        )
    if summary.get("cost_usd"):
        cost = ", ".join(f"{k} ${_fmt(v)}" for k, v in summary["cost_usd"].items())
        lines += ["", f"Token cost: {cost} (from the price table)."]
    lines += [
        "",
        "## Experiments",
        "",
        f"| # | move | proposal | status | CV {metric} | gain | significant | fidelity | reward S / E |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in experiments:
        rewards = e.get("rewards", {})
        lines.append(
            f"| {e['id']} | {e.get('move') or ''} | {shorten(e['proposal']).replace('|', '/')} | {e['status']} | "
            f"{_fmt(e['cv'].get(metric))} | {_fmt(e.get('gain'))} | {'yes' if e.get('significant') else ''} | "
            f"{_fmt(e.get('fidelity'))} | {_fmt(rewards.get('scientist'))} / {_fmt(rewards.get('executor'))} |"
        )
    if task.get("notes"):
        lines += ["", "## Notes on the data", "", *(f"- {n}" for n in task["notes"])]
    return "\n".join(lines) + "\n"
