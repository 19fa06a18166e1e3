"""The run report: what was tried, what it scored, what each agent earned, and the honest holdout.

Rendered from values, not files: the summary, the ledger and the reward events, as the deliver
node holds them (or as anyone reads them back from `summary.json`, `experiments.jsonl` and
`rewards.jsonl`, so an old or a copied run can be reported again without the graph). The
function returns the text; its two plots are the HTML report's figures saved as PNG files
(`report_html.figure_png`). Where it all goes is the caller's business.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from typing import Any


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)


def shorten(text: str, width: int = 120) -> str:
    """At most `width` characters, cut between words and marked with an ellipsis (never mid-word)."""
    return textwrap.shorten(text, width=width, placeholder=" …")


def render_report(summary: Mapping[str, Any], experiments: list[dict[str, Any]], *, images: Mapping[str, str]) -> str:
    """The Markdown report; `images` names the PNG files of the HTML report's CV-score figure
    ("scores") and reward figure ("rewards") relative to where the report is written."""
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
