"""The reward rules (README.md, "Rewards") as pure functions, every part kept apart.

Gains are judged on paired fold differences against the incumbent (the same folds for every
candidate), so a lucky fold does not make an idea significant, and a worse-then-better
oscillation earns nothing because each candidate is compared with the best so far.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import cast

import numpy as np

from tandem.graph.context import RewardConfig
from tandem.graph.state import ExperimentRecord, RewardEvent, TokenUsage
from tandem.tools.ensemble_selection import ENSEMBLE_POOL, select_ensemble
from tandem.tools.metrics import METRICS, gain, reward_scale
from tandem.tools.spec import EnsembleSpec, PipelineSpec, parse_spec
from tandem.tools.training import DISCRETE_METRICS, TIE_BREAK_METRIC, Problem


@dataclass(frozen=True)
class Comparison:
    """A candidate against the incumbent on the primary metric."""

    gain: float
    """Mean signed gain in reward units (positive = better)."""
    t_stat: float
    significant: bool
    better: bool = False
    """Whether the candidate replaces the incumbent: a positive gain, or on a near-tie of a
    discrete metric a lower log-loss (`judge`)."""
    tie_break: float | None = None
    """Mean log-loss gain (relative to the incumbent's) when it decided a near-tie."""


def compare(
    metric: str,
    candidate_folds: list[float],
    incumbent_folds: list[float],
    config: RewardConfig,
    *,
    folds_per_repeat: int | None = None,
) -> Comparison:
    """Paired comparison over folds: significant when mean gain > `min_gain` and t >= `significance_t`.

    One repeat of K folds: t = mean(d) / (sd(d) / sqrt(K)), d_k the per-fold gain. Repeated folds
    (`folds_per_repeat` = K and R·K scores, repeat by repeat) re-use the same rows, so their
    differences are not independent: t = mean(d) / sqrt(sd(d)² · (1/(R·K) + 1/(K-1))), the
    corrected repeated K-fold test of Nadeau and Bengio (2003) as Bouckaert and Frank (2004) apply
    it. Identical folds give t = 0, a uniform positive gain gives t = +inf.
    """
    inc_mean = float(np.mean(incumbent_folds))
    scale = reward_scale(metric, inc_mean)
    diffs = np.array([gain(metric, c, i) for c, i in zip(candidate_folds, incumbent_folds, strict=True)]) / scale
    mean = float(diffs.mean())
    if not math.isfinite(mean):
        return Comparison(float("nan"), 0.0, False)
    spread = float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0
    n = len(diffs)
    if spread > 1e-12:
        k = folds_per_repeat or n
        if k < n and k > 1:  # repeated folds: the corrected variance
            t_stat = mean / math.sqrt(spread**2 * (1.0 / n + 1.0 / (k - 1)))
        else:
            t_stat = mean / (spread / math.sqrt(n))
    else:
        t_stat = math.inf if mean > 1e-12 else (-math.inf if mean < -1e-12 else 0.0)
    significant = mean > config.min_gain and t_stat >= config.significance_t
    return Comparison(mean, t_stat, significant, better=mean > 0)


NEAR_TIE_T = 1.0
"""A discrete primary metric is tied when the candidate's paired |t| stays below this."""


def judge(
    metric: str,
    candidate: Mapping[str, list[float]],
    incumbent: Mapping[str, list[float]],
    config: RewardConfig,
    *,
    folds_per_repeat: int | None = None,
) -> Comparison:
    """Compare on the primary metric; on a near-tie of a discrete one, let log-loss decide.

    F1, accuracy and their kin are step functions on small folds: four different models can score
    identically to 16 digits, and a mean difference within one standard error is noise. Then the
    candidate replaces the incumbent only if its log-loss (a proper scoring rule, which rewards
    calibrated probabilities row by row) is lower on the same folds (docs/decisions.md, "Ties on a
    discrete metric"). Significance, and so the rewards, stay on the primary metric alone.
    """
    result = compare(metric, candidate[metric], incumbent[metric], config, folds_per_repeat=folds_per_repeat)
    if (
        metric not in DISCRETE_METRICS
        or not math.isfinite(result.gain)
        or abs(result.t_stat) >= NEAR_TIE_T
        or TIE_BREAK_METRIC not in candidate
        or TIE_BREAK_METRIC not in incumbent
    ):
        return result
    cand, inc = np.asarray(candidate[TIE_BREAK_METRIC], float), np.asarray(incumbent[TIE_BREAK_METRIC], float)
    if len(cand) != len(inc) or not (np.isfinite(cand).all() and np.isfinite(inc).all()):
        return result
    if np.array_equal(cand, inc):  # the same probabilities (a new decision threshold): log-loss cannot decide
        return result
    tie_gain = float(np.mean(inc - cand)) / max(abs(float(np.mean(inc))), 1e-12)
    return replace(result, better=tie_gain > 0, tie_break=round(tie_gain, 10))


def small_data_blend(
    ledger: Sequence[ExperimentRecord],
    oof: Callable[[str], np.ndarray | None],
    y: np.ndarray,
    problem: Problem,
    *,
    per_family: bool = True,
) -> EnsembleSpec | None:
    """What small data deliver: Caruana's ensemble selection over the best single pipelines, or
    None (deliver the incumbent) when no blend of two or more of them is chosen.

    On small data the best of tens of candidates scored on the same folds is picked optimistically
    (the winner's curse), and no single model's CV lead can be trusted. A blend chosen greedily on
    the out-of-fold predictions of a pool of the best single pipelines (`blend_pool`; default
    threshold, no bag: what a soft vote averages) has less variance than any one of them; the
    holdouts of bench runs, scored under each rule, are the evidence (docs/decisions.md, "What is
    delivered"). `oof` maps a spec hash to its saved out-of-fold predictions (None when none were saved).
    `per_family=False` pools the best by score alone, the rule before (kept for scripts/selection_study.py).
    """
    greater = METRICS[problem.primary_metric].greater_is_better
    oofs = blend_pool(blend_candidates(ledger), oof, greater_is_better=greater, per_family=per_family)
    selection = select_ensemble(oofs, y, problem)
    if selection is None:
        return None
    ids = tuple(selection.weights)
    return EnsembleSpec(
        members=tuple(cast(PipelineSpec, parse_spec(ledger[i]["spec"] or {})) for i in ids),
        weights=tuple(float(selection.weights[i]) for i in ids),
        member_ids=ids,
    )


def blend_candidates(ledger: Sequence[ExperimentRecord]) -> list[ExperimentRecord]:
    """The experiments a small-data blend may take: plain pipelines (default threshold, no bag:
    what a soft vote averages) that were scored."""
    return [
        r
        for r in ledger
        if r["status"] == "ok"
        and r["spec_hash"]
        and (spec := r["spec"] or {}).get("kind") == "pipeline"
        and spec.get("threshold") == "default"
        and not spec.get("bagging")
    ]


def blend_pool(
    candidates: Sequence[ExperimentRecord],
    oof: Callable[[str], np.ndarray | None],
    *,
    greater_is_better: bool,
    size: int = ENSEMBLE_POOL,
    per_family: bool = True,
) -> dict[int, np.ndarray]:
    """The out-of-fold predictions (experiment id → array) Caruana's selection chooses among: each
    model family's best candidate first, best family first, then the best of the rest, `size` in all.

    Why a place for every family, as AutoGluon's weighted ensemble has one for every base model: a
    blend gains from members whose errors differ, and a search that tunes one family fills a
    pool of the best `size` by score with near-copies of it. On a Credit balance run (320 rows) the
    8 best were 8 ridge models, CatBoost ranked 9th, and the ridge-only blend scored a CV RMSE of
    81.5 where the search's own ridge + CatBoost ensembles had 70.5 to 73.3.
    """
    sign = 1.0 if greater_is_better else -1.0
    ranked = sorted(candidates, key=lambda r: (-sign * (r["primary"] or 0.0), r["id"]))
    family = {r["id"]: str(((r["spec"] or {}).get("model") or {}).get("family")) for r in ranked}
    missing: set[int] = set()  # asked once: no saved predictions
    pool: dict[int, np.ndarray] = {}
    for one_per_family in (True, False) if per_family else (False,):
        for record in ranked:
            i = record["id"]
            if len(pool) == size:
                return pool
            if i in pool or i in missing or (one_per_family and family[i] in {family[j] for j in pool}):
                continue
            if (predictions := oof(record["spec_hash"] or "")) is None:
                missing.add(i)
            else:
                pool[i] = predictions
    return pool


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

    An invalid proposal is not the Executor's fault: it then pays only for its tokens. The gain is
    paid only for a candidate that replaces the incumbent (`Comparison.better`): one that loses a
    near-tie on log-loss (`judge`) would otherwise be paid each time the old incumbent is proposed
    again, the oscillation DESIGN.md says earns nothing. A gain that is not a number pays nothing.
    """
    judged = proposal_valid
    paid = not failed and comparison is not None and comparison.better and math.isfinite(comparison.gain)
    parts = {
        "gain": fidelity * max(comparison.gain, 0.0) if paid and comparison is not None else 0.0,
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
        "gain": comparison.gain
        if faithful and comparison and comparison.significant
        else 0.0,  # finite when significant
        "insignificant": -config.insignificant_penalty
        if faithful and comparison and not comparison.significant
        else 0.0,
        "tokens": -config.token_cost * tokens,
    }
    return _event(experiment_id, "scientist", parts)


def _event(experiment_id: int, agent: str, parts: dict[str, float]) -> RewardEvent:
    clean = {k: round(float(v), 10) + 0.0 for k, v in parts.items()}
    return RewardEvent(experiment_id=experiment_id, agent=agent, total=round(sum(clean.values()), 10), parts=clean)  # type: ignore[typeddict-item]
