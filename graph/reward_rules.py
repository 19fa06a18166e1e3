"""The reward rules (README.md, "Rewards") as pure functions, every part kept apart.

Gains are judged on paired fold differences against the incumbent (the same folds for every
candidate), so a lucky fold does not make an idea significant, and a worse-then-better
oscillation earns nothing because each candidate is compared with the best so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tandem.graph.context import RewardConfig
from tandem.graph.state import ExperimentRecord, RewardEvent, TokenUsage
from tandem.tools.metrics import METRICS, gain, reward_scale
from tandem.tools.spec import complexity, parse_spec


@dataclass(frozen=True)
class Comparison:
    """A candidate against the incumbent on the primary metric."""

    gain: float
    """Mean signed gain in reward units (positive = better)."""
    t_stat: float
    significant: bool


def compare(
    metric: str, candidate_folds: list[float], incumbent_folds: list[float], config: RewardConfig
) -> Comparison:
    """Paired comparison over folds: significant when mean gain > `min_gain` and t >= `significance_t`.

    t = mean(d) / (std(d, ddof=1) / sqrt(K)), d_k the per-fold gain; identical folds give t = 0,
    a uniform positive gain gives t = +inf.
    """
    inc_mean = float(np.mean(incumbent_folds))
    scale = reward_scale(metric, inc_mean)
    diffs = np.array([gain(metric, c, i) for c, i in zip(candidate_folds, incumbent_folds, strict=True)]) / scale
    mean = float(diffs.mean())
    if not math.isfinite(mean):
        return Comparison(float("nan"), 0.0, False)
    spread = float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0
    if spread > 1e-12:
        t_stat = mean / (spread / math.sqrt(len(diffs)))
    else:
        t_stat = math.inf if mean > 1e-12 else (-math.inf if mean < -1e-12 else 0.0)
    significant = mean > config.min_gain and t_stat >= config.significance_t
    return Comparison(mean, t_stat, significant)


def simplest_within_noise(ledger: list[ExperimentRecord], incumbent: int, metric: str, max_t: float) -> int:
    """The simplest experiment the incumbent does not beat beyond fold noise (docs/decisions.md).

    On small data CV differences are mostly noise and the best of many candidates on the same
    folds is optimistically chosen (the winner's curse). So among the successful experiments whose
    paired t-statistic against the incumbent stays below `max_t` (one standard error by default),
    the least complex one is delivered; ties go to the better mean score, then the earlier one.
    """
    best = ledger[incumbent]
    sign = 1.0 if METRICS[metric].greater_is_better else -1.0
    close = [
        r
        for r in ledger
        if r["status"] == "ok"
        and r["spec"] is not None
        and compare(metric, best["fold_scores"][metric], r["fold_scores"][metric], RewardConfig()).t_stat < max_t
    ]
    if not close:
        return incumbent
    chosen = min(close, key=lambda r: (complexity(parse_spec(r["spec"])), -sign * (r["primary"] or 0.0), r["id"]))  # type: ignore[arg-type]
    return chosen["id"]


def token_count(usage: TokenUsage | None) -> int:
    return 0 if usage is None else int(usage["input"]) + int(usage["output"])


def executor_reward(
    experiment_id: int,
    *,
    fidelity: float,
    comparison: Comparison | None,
    failed: bool,
    tokens: int,
    config: RewardConfig,
    proposal_valid: bool = True,
) -> RewardEvent:
    """+ fidelity × max(gain, 0); − mismatch when unfaithful; − failure when it does not run; − tokens.

    An invalid proposal is not the Executor's fault: it then pays only for its tokens.
    """
    judged = proposal_valid
    parts = {
        "gain": 0.0 if failed or comparison is None else fidelity * max(comparison.gain, 0.0),
        "mismatch": -config.mismatch_penalty if judged and fidelity < config.low_fidelity else 0.0,
        "failure": -config.failure_penalty if judged and failed else 0.0,
        "tokens": -config.token_cost * tokens,
    }
    return _event(experiment_id, "executor", parts)


def scientist_reward(
    experiment_id: int,
    *,
    fidelity: float,
    comparison: Comparison | None,
    failed: bool,
    tokens: int,
    config: RewardConfig,
    proposal_valid: bool = True,
) -> RewardEvent:
    """+ gain when faithful and significant; − insignificance when faithful but not; no blame when
    unfaithful; − the failure penalty for a proposal that cannot be built at all; − tokens."""
    faithful = proposal_valid and fidelity >= config.low_fidelity and not failed and comparison is not None
    parts = {
        "invalid": 0.0 if proposal_valid else -config.failure_penalty,
        "gain": comparison.gain if faithful and comparison and comparison.significant else 0.0,
        "insignificant": -config.insignificant_penalty
        if faithful and comparison and not comparison.significant
        else 0.0,
        "tokens": -config.token_cost * tokens,
    }
    return _event(experiment_id, "scientist", parts)


def _event(experiment_id: int, agent: str, parts: dict[str, float]) -> RewardEvent:
    clean = {k: round(float(v), 10) + 0.0 for k, v in parts.items()}
    return RewardEvent(experiment_id=experiment_id, agent=agent, total=round(sum(clean.values()), 10), parts=clean)  # type: ignore[typeddict-item]
