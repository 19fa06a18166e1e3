"""The shared memory as an LLM sees it: a bounded summary, never the whole ledger.

A prompt that replays every experiment grows with the run and makes late steps the most
expensive (and the most confused). The summary keeps a fixed number of lines whatever the
length of the run: the best few experiments, the latest few, the latest failures with their
reasons, and the kinds of change already tried with how often and how well. The full record of
any experiment stays one tool call away (`experiment`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from tandem.graph.state import ExperimentRecord
from tandem.nodes.agents.base import ScientistView
from tandem.nodes.agents.prompts import quoted
from tandem.tools.analysis import clip


@dataclass(frozen=True)
class MemoryLimits:
    best: int = 3
    recent: int = 3
    failures: int = 3
    kinds: int = 10
    line_chars: int = 150


def summarize(view: ScientistView, limits: MemoryLimits = MemoryLimits()) -> str:
    """The memory section of the Scientist's prompt; its length does not depend on the ledger's."""
    ledger, metric = view.ledger, view.task["primary_metric"]
    ok = [r for r in ledger if r["status"] == "ok" and r["primary"] is not None]
    sign = 1.0 if view.task["greater_is_better"] else -1.0
    best = sorted(ok, key=lambda r: (-sign * float(r["primary"] or 0.0), r["id"]))[: limits.best]
    failures = [r for r in ledger[1:] if _failure(r, view)][-limits.failures :]
    lines = [_counts(view)]
    lines += ["Best experiments:", *(_line(r, metric, limits) for r in best)]
    lines += ["Latest experiments:", *(_line(r, metric, limits) for r in ledger[1:][-limits.recent :])]
    if len(ledger) == 1:
        lines.append("  (none yet besides the baseline)")
    if failures:
        lines += [
            "Latest failures:",
            *(f"  #{r['id']}: {clip(_failure(r, view), limits.line_chars)}" for r in failures),
        ]
    lines += _kinds(ledger[1:], limits)
    lines += _rejections(view, limits)
    return "\n".join(lines)


def _rejections(view: ScientistView, limits: MemoryLimits) -> list[str]:
    """The latest proposals or deliveries a human reviewer rejected, with what they said (quoted)."""
    latest = list(view.feedback)[-limits.failures :]
    if not latest:
        return []
    lines = ["Rejected by the human reviewer (respect this):"]
    for item in latest:
        said = json.dumps(clip(item["reason"], 120), ensure_ascii=False) if item["reason"] else "no reason given"
        lines.append(clip(f"  {item['kind']} {item['proposal']}: {said}", limits.line_chars + 60))
    return lines


def _counts(view: ScientistView) -> str:
    ledger = view.ledger
    ok = sum(r["status"] == "ok" for r in ledger)
    significant = sum(r["significant"] for r in ledger)
    return (
        f"Experiments so far: {len(ledger)} (#0 is the baseline); {ok} ran, {len(ledger) - ok} failed, "
        f"{significant} brought a significant gain."
    )


def _line(record: ExperimentRecord, metric: str, limits: MemoryLimits) -> str:
    if record["primary"] is not None:
        score = f"CV {metric} {record['primary']:.4f} ± {record['cv_std'].get(metric, 0.0):.4f}"
    else:
        score = record["status"]
    gain = (
        ""
        if record["gain"] is None
        else f", gain {record['gain']:+.4f}{' significant' if record['significant'] else ''}"
    )
    family = ((record["spec"] or {}).get("model") or {}).get("family") or (record["spec"] or {}).get("kind", "-")
    move = f" [{clip(record['move'], 24)}]" if record["move"] else ""
    text = f"#{record['id']}{move} {family}: {score}{gain}; fidelity {record['fidelity']:.2f} | {record['proposal']}"
    return "  " + clip(text, limits.line_chars)


def _failure(record: ExperimentRecord, view: ScientistView) -> str:
    """Why an experiment failed or was not judged, or '' when it did not fail."""
    if record["status"] != "ok":
        return f"failed: {quoted(record['error'], 120)}" if record["error"] else "failed: no reason given"
    # the verifier's reasons name columns and values from the data: quoted, as an error is
    issues = record["verification"]
    if issues and issues[0].startswith("invalid proposal"):
        return f"invalid proposal: {quoted(issues[0].removeprefix('invalid proposal: '), 120)}"
    if record["fidelity"] < view.rewards.low_fidelity:
        return (
            f"implemented unfaithfully (fidelity {record['fidelity']:.2f}): {quoted(issues[0], 120) if issues else ''}"
        )
    return ""


def change_kind(change: dict[str, Any]) -> str:
    """A short name for a kind of change: the change type and what it is about (family, operation, keys)."""
    kind = str(change.get("change", "?"))
    if kind == "set_model":
        return f"set_model:{change.get('family')}"
    if kind in ("add_feature", "remove_feature"):
        return f"{kind}:{(change.get('feature') or {}).get('op')}"
    if kind == "set_params":
        return f"set_params:{','.join(sorted(change.get('params') or {}))}"
    if kind == "set_preprocessing":
        return f"set_preprocessing:{','.join(sorted(change.get('settings') or {}))}"
    if kind == "build_ensemble":
        return f"build_ensemble:{change.get('method', 'voting')}"
    return kind


def _kinds(records: list[ExperimentRecord], limits: MemoryLimits) -> list[str]:
    tried: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for change in record["changes"]:
            tried[clip(change_kind(change), 60)].append(record["gain"] if record["gain"] is not None else float("nan"))
    if not tried:
        return []
    ranked = sorted(tried.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    lines = ["Kinds of change tried (times; best gain):"]
    for name, gains in ranked[: limits.kinds]:
        finite = [g for g in gains if g == g]
        best = f"{max(finite):+.4f}" if finite else "none ran"
        lines.append(f"  {name} ×{len(gains)}; {best}")
    if len(ranked) > limits.kinds:
        lines.append(f"  … and {len(ranked) - limits.kinds} other kinds")
    return lines
