"""MLGym-style performance profiles and the area under them (AUP), from stored results.

Why profiles: a mean score over tasks mixes accuracies with RMSEs; ranks ignore by how much a
player won. A performance profile (Dolan & Moré 2002, as adapted by MLGym, Nathani et al. 2025)
asks, for each player, on what share of problems it was within a factor τ of the best player,
and AUP sums that up in one number. The definition, exactly as implemented here:

1. A *problem* p is one task played with one seed. Every player m has a holdout score s(p, m)
   on the task's primary metric (`None` when the player failed).
2. The task's *baseline* is the `linear` player (a scaled linear model, like MLGym's baselines).
   A score is *feasible* when it is a number, not negative, and not worse than the baseline's
   (MLGym's rule); the baseline itself is feasible when its score is a non-negative number.
3. Among feasible scores, best = the highest (metrics where higher is better) or the lowest, and
   the performance ratio is r(p, m) = best / s(p, m) (higher is better) or s(p, m) / best, so
   r = 1 for the best player and r > 1 otherwise.
4. An infeasible player gets r(p, m) = (1 + ε) · max of the feasible ratios on p, ε = 0.05
   (MLGym's penalty: worse than the worst feasible player). A ratio that would divide by zero
   is infinite (never within any τ).
5. The profile is ρ_m(τ) = |{p : log10 r(p, m) ≤ τ}| / |P| for τ in [0, τ_max], τ_max = 1.5.
6. AUP_m = ∫₀^τ_max ρ_m(τ) dτ = (1/|P|) · Σ_p max(0, τ_max − log10 r(p, m)).

So AUP lies in [0, τ_max]; τ_max = 1.5 means a player that is best on every problem scores 1.5.
MLGym integrates the same step function numerically on a grid of 500 τ values; the closed form
in (6) is its exact value and is what a reader can recompute by hand from the results table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

EPSILON = 0.05
TAU_MAX = 1.5
BASELINE = "linear"


def is_feasible(score: float | None, baseline: float | None, greater_is_better: bool) -> bool:
    """Step 2: a non-negative number, not worse than the baseline (any number when the baseline has none)."""
    if score is None or not math.isfinite(score) or score < 0:
        return False
    if baseline is None or not math.isfinite(baseline) or baseline < 0:
        return True
    return score >= baseline if greater_is_better else score <= baseline


def performance_ratios(
    scores: Mapping[str, float | None],
    *,
    greater_is_better: bool,
    baseline: str = BASELINE,
    epsilon: float = EPSILON,
) -> dict[str, float]:
    """r(p, m) for every player on one problem (steps 2–4 of the module docstring)."""
    base = scores.get(baseline)
    feasible = {m: float(s) for m, s in scores.items() if s is not None and is_feasible(s, base, greater_is_better)}
    ratios: dict[str, float] = {}
    if feasible:
        best = max(feasible.values()) if greater_is_better else min(feasible.values())
        for m, s in feasible.items():
            if s == best:
                ratios[m] = 1.0
            else:
                num, den = (best, s) if greater_is_better else (s, best)
                ratios[m] = num / den if den > 0 else math.inf
    finite = [r for r in ratios.values() if math.isfinite(r)]
    penalty = (1 + epsilon) * (max(finite) if finite else 1.0)
    return {m: ratios.get(m, penalty) for m in scores}


def profile_value(log_ratios: Sequence[float], tau: float) -> float:
    """ρ(τ): the share of problems whose log10 ratio is at most τ."""
    return sum(1 for x in log_ratios if x <= tau) / len(log_ratios) if log_ratios else 0.0


def aup(log_ratios: Sequence[float], tau_max: float = TAU_MAX) -> float:
    """Exact area under the step profile on [0, tau_max] (step 6)."""
    if not log_ratios:
        return 0.0
    return sum(max(0.0, tau_max - x) for x in log_ratios) / len(log_ratios)


@dataclass(frozen=True)
class ScoredProblem:
    """One task played with one seed, and each player's primary holdout score on it."""

    task: str
    seed: int
    metric: str
    greater_is_better: bool
    scores: dict[str, float | None]


@dataclass(frozen=True)
class Profiles:
    """Ratios per problem, log ratios per player, and each player's AUP."""

    problems: list[ScoredProblem]
    ratios: list[dict[str, float]]
    players: list[str]
    aup: dict[str, float]
    tau_max: float

    def log_ratios(self, player: str) -> list[float]:
        return [math.log10(r[player]) if math.isfinite(r[player]) else math.inf for r in self.ratios]


def compute_profiles(
    problems: Sequence[ScoredProblem],
    players: Sequence[str],
    *,
    baseline: str = BASELINE,
    epsilon: float = EPSILON,
    tau_max: float = TAU_MAX,
) -> Profiles:
    """Profiles and AUP of `players` over `problems` (a player with no score on a problem is infeasible there)."""
    ratios = [
        performance_ratios(
            {m: p.scores.get(m) for m in players},
            greater_is_better=p.greater_is_better,
            baseline=baseline,
            epsilon=epsilon,
        )
        for p in problems
    ]
    result = Profiles(list(problems), ratios, list(players), {}, tau_max)
    result.aup.update({m: aup(result.log_ratios(m), tau_max) for m in players})
    return result


def plot_profiles(profiles: Profiles, path: str | Path, title: str = "Performance profiles") -> Path:
    """PNG of ρ_m(τ): the whole range [0, τ_max] and a zoom on where the players differ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [x for m in profiles.players for x in profiles.log_ratios(m) if math.isfinite(x)]
    zoom = max(max(finite, default=0.0) * 1.15, 1e-3)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for ax, upper in zip(axes, (zoom, profiles.tau_max), strict=True):
        for player in profiles.players:
            points = sorted(profiles.log_ratios(player))
            xs = [0.0] + [x for x in points if x <= upper] + [upper]
            ys = [profile_value(points, x) for x in xs]
            label = f"{player} (AUP {profiles.aup[player]:.4f})"
            ax.step(xs, ys, where="post", label=label, linewidth=1.8)
        ax.set_xlim(0, upper)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("τ  (log10 of the performance ratio)")
        ax.grid(True, linestyle="--", alpha=0.5)
    axes[0].set_ylabel("ρ(τ): share of problems within τ of the best")
    axes[0].set_title(f"zoom: τ ≤ {zoom:.3g}", fontsize=10)
    axes[1].set_title(f"whole range: τ ≤ {profiles.tau_max:g} (AUP = area)", fontsize=10)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{title} — {len(profiles.problems)} problems")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
