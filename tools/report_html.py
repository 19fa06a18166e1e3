"""The run report as one self-contained HTML file: plots inline as SVG, no scripts, no links out.

A single file opens anywhere (a browser offline, an e-mail attachment, a CI artifact) and keeps
working when moved. Like `report.md`, it is rendered from values (the summary, the ledger and
the reward events, as the deliver node holds them or as `summary.json`, `experiments.jsonl` and
`rewards.jsonl` keep them), so any run can be reported again.

What it shows: the holdout table (baseline vs delivered, scored once at delivery), the CV score
of every experiment with its fold scores, spread and the incumbent line, the cumulative reward
of each agent split into its parts (gain, fidelity/mismatch, failure, insignificance, token
penalty), the tokens each agent spent, the experiment ledger and any human feedback.
"""

from __future__ import annotations

import html
import io
import re
from itertools import accumulate
from typing import Any

import matplotlib
from matplotlib.figure import Figure

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
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2328; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; }
.muted { color: #59636e; } .plot svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eef9ee; } .cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: .6rem 1rem; min-width: 12rem; }
.card b { font-size: 1.3rem; display: block; }
"""


def _svg(fig: Figure) -> str:
    """A figure as inline SVG markup (text kept as text, so it stays small and searchable)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)  # RDF namespaces only, no content


def cv_figure(experiments: list[dict[str, Any]], metric: str, greater_is_better: bool) -> Figure:
    """Every fold score (dots), the mean ± fold std (bars), the incumbent line, failures (x)."""
    fig = Figure(figsize=(9, 4))
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


def render_html(summary: dict[str, Any], experiments: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """The whole report page."""
    task, base, best = summary["task"], summary["baseline"], summary["best"]
    metric = task["primary_metric"]
    e = html.escape
    holdout_rows = [
        [m, base["cv"].get(m), best["cv"].get(m), base["holdout"].get(m), best["holdout"].get(m)]
        for m in task["metrics"]
    ]
    ledger_rows = [
        [
            x["id"],
            x.get("move") or "",
            x["proposal"][:120],
            x["status"],
            x["cv"].get(metric),
            x["cv_std"].get(metric),
            x.get("gain"),
            "yes" if x.get("significant") else "",
            x.get("fidelity"),
            (x.get("rewards") or {}).get("scientist"),
            (x.get("rewards") or {}).get("executor"),
        ]
        for x in experiments
    ]
    reward_rows = [
        [a, summary["rewards"].get(a), *(summary.get("reward_parts", {}).get(a, {}).get(p) for p in PART_COLOURS)]
        for a in AGENTS
    ]
    token_rows = [
        [a, summary["tokens"].get(a, {}).get("input", 0), summary["tokens"].get(a, {}).get("output", 0)] for a in AGENTS
    ]
    gain = _delta(base["holdout"].get(metric), best["holdout"].get(metric))
    feedback = summary.get("feedback") or []
    agents = summary.get("agents") or {}
    who = ", ".join(f"{a}: {v.get('model') or v.get('kind')}" for a, v in agents.items()) if agents else "heuristic"
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>tandem run {e(summary['run_id'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>tandem run <code>{e(summary['run_id'])}</code></h1>",
        f"<p class='muted'>Predicting <b>{e(str(task['target']))}</b> ({e(task['task_type'])}) from "
        f"<code>{e(task['csv_path'])}</code>: {task['n_dev_rows']} development rows in {task['folds']} folds, "
        f"{task['n_holdout_rows']} holdout rows ({e(task['holdout_source'])}). Primary metric <b>{e(metric)}</b> "
        f"({'higher' if task['greater_is_better'] else 'lower'} is better). Agents: {e(who)}. "
        f"Stopped after {summary['iterations']} experiments: {e(str(summary['stop_reason']))}.</p>",
        "<div class='cards'>",
        _card(f"holdout {metric}, delivered #{best['experiment_id']}", best["holdout"].get(metric)),
        _card(f"holdout {metric}, baseline #0", base["holdout"].get(metric)),
        _card("holdout gain", gain),
        _card(f"best CV {metric}", best["cv"].get(metric)),
        "</div>",
        "<h2>Holdout: baseline vs delivered</h2>",
        "<p class='muted'>Scored once, at delivery; no agent and no decision ever saw these numbers.</p>",
        _table(
            [
                "metric",
                "CV baseline",
                f"CV delivered #{best['experiment_id']}",
                "holdout baseline",
                "holdout delivered",
            ],
            holdout_rows,
            numeric={1, 2, 3, 4},
        ),
        f"<p>Delivered model: {e(best['proposal'])}</p>",
        "<h2>Cross-validation score per iteration</h2>",
        f"<div class='plot'>{_svg(cv_figure(experiments, metric, task['greater_is_better']))}</div>",
        "<h2>Rewards</h2>",
        "<p class='muted'>Cumulative reward per agent (black) and the parts it is made of: gain (scaled by "
        "fidelity for the Executor), mismatch (unfaithful implementation), failure, insignificant idea, "
        "invalid proposal, and the token penalty.</p>",
        f"<div class='plot'>{_svg(reward_figure(events))}</div>",
        _table(["agent", "total", *PART_COLOURS], reward_rows, numeric=set(range(1, 2 + len(PART_COLOURS)))),
        "<h2>Tokens</h2>",
        f"<div class='plot'>{_svg(token_figure(experiments))}</div>"
        if _any_tokens(token_rows)
        else "<p class='muted'>Heuristic agents call no API: no tokens were spent.</p>",
        _table(["agent", "input", "output"], token_rows, numeric={1, 2}),
        "<h2>Experiments</h2>",
        _table(
            [
                "#",
                "move",
                "proposal",
                "status",
                f"CV {metric}",
                "fold std",
                "gain",
                "significant",
                "fidelity",
                "reward S",
                "reward E",
            ],
            ledger_rows,
            numeric={4, 5, 6, 8, 9, 10},
            best=best["experiment_id"],
        ),
    ]
    if feedback:
        parts += [
            "<h2>Human feedback at approval gates</h2>",
            _table(
                ["after experiments", "rejected", "what", "reason"],
                [[f["iteration"], f["kind"], f["proposal"], f["reason"]] for f in feedback],
            ),
        ]
    if task.get("notes"):
        parts += ["<h2>Notes on the data</h2><ul>", *(f"<li>{e(n)}</li>" for n in task["notes"]), "</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def _card(label: str, value: Any) -> str:
    return f"<div class='card'><span class='muted'>{html.escape(label)}</span><b>{html.escape(_fmt(value))}</b></div>"


def _delta(before: Any, after: Any) -> float | None:
    if isinstance(before, float) and isinstance(after, float):
        return after - before
    return None


def _any_tokens(rows: list[list[Any]]) -> bool:
    return any(r[1] or r[2] for r in rows)
