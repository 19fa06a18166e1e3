"""The run report: what was tried, what it scored, what each agent earned, and the honest holdout.

Built only from the files a run leaves (`summary.json`, `experiments.jsonl`, `rewards.jsonl`), so
any run folder, even an old or a copied one, can be reported again without the graph.
"""

from __future__ import annotations

import json
import math
from itertools import accumulate
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)


def plot_scores(experiments: list[dict[str, Any]], metric: str, path: Path) -> None:
    """CV score per experiment with its fold spread, and the incumbent line."""
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rewards(events: list[dict[str, Any]], path: Path) -> None:
    """Cumulative reward per agent over the experiments."""
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(run_dir: Path) -> Path:
    """Write `report.md` and its plots into the run folder; return the report's path."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    experiments = read_jsonl(run_dir / "experiments.jsonl")
    events = read_jsonl(run_dir / "rewards.jsonl")
    task = summary["task"]
    metric = task["primary_metric"]
    plot_scores(experiments, metric, run_dir / "cv_scores.png")
    plot_rewards(events, run_dir / "rewards.png")
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
        "![CV score per experiment](cv_scores.png)",
        "",
        "## Rewards",
        "",
        "![cumulative reward per agent](rewards.png)",
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
            f"| {e['id']} | {e.get('move') or ''} | {e['proposal'][:90].replace('|', '/')} | {e['status']} | "
            f"{_fmt(e['cv'].get(metric))} | {_fmt(e.get('gain'))} | {'yes' if e.get('significant') else ''} | "
            f"{_fmt(e.get('fidelity'))} | {_fmt(rewards.get('scientist'))} / {_fmt(rewards.get('executor'))} |"
        )
    if task.get("notes"):
        lines += ["", "## Notes on the data", "", *(f"- {n}" for n in task["notes"])]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
