"""A contextual bandit: one Bayesian linear model per arm, played by Thompson sampling or greedily.

Pure numpy and no knowledge of agents: an arm is a name, a context is a vector. Each arm `a`
keeps the sufficient statistics of a Bayesian ridge regression of its reward on the context,

    A_a = λ·I + Σ x xᵀ        b_a = λ·m_a + Σ r·x        θ̂_a = A_a⁻¹ b_a

(prior θ_a ~ N(m_a, σ²/λ·I), reward r = xᵀθ_a + ε with ε ~ N(0, σ²)), so the posterior is
θ_a | data ~ N(θ̂_a, σ²·A_a⁻¹). An update after observing reward r for arm a in context x is

    A_a ← A_a + x xᵀ        b_a ← b_a + r·x

which is order-independent: the same observations give the same model however they are batched,
so training can be stopped and resumed (and episodes gathered in parallel) without changing it.

Scores: `thompson` draws θ from each arm's posterior and scores xᵀθ (exploration in proportion to
uncertainty, Agrawal & Goyal 2013); `ucb` is LinUCB's xᵀθ̂ + α·sqrt(xᵀA⁻¹x) (Li et al. 2010);
`greedy` is the posterior mean xᵀθ̂, deterministic, which is what a frozen policy plays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Mode = Literal["greedy", "thompson", "ucb"]
MODES: tuple[Mode, ...] = ("greedy", "thompson", "ucb")


@dataclass
class LinearArm:
    """The sufficient statistics of one arm's Bayesian ridge regression."""

    A: np.ndarray
    b: np.ndarray
    n: int = 0

    @classmethod
    def fresh(cls, dim: int, ridge: float, prior_mean: Sequence[float] | None = None) -> LinearArm:
        """No data yet: the posterior is the prior N(m, σ²/λ·I), i.e. A = λI and b = λm."""
        mean = np.zeros(dim) if prior_mean is None else np.asarray(prior_mean, dtype=float)
        return cls(A=np.eye(dim) * ridge, b=ridge * mean)

    def mean(self) -> np.ndarray:
        return np.linalg.solve(self.A, self.b)

    def update(self, x: np.ndarray, reward: float) -> None:
        self.A = self.A + np.outer(x, x)
        self.b = self.b + reward * x
        self.n += 1


@dataclass
class LinearBandit:
    """Disjoint linear models, one per arm, over contexts of a fixed dimension."""

    arms: tuple[str, ...]
    dim: int
    ridge: float = 1.0
    noise: float = 0.5
    """σ, the reward noise scale: the width of the Thompson draws."""
    alpha: float = 1.0
    """LinUCB's exploration weight."""
    models: dict[str, LinearArm] = field(default_factory=dict)
    prior: Mapping[str, Sequence[float]] = field(default_factory=dict)
    """Prior means of the arms without statistics yet (zero if absent); kept inside `b` after that."""

    def __post_init__(self) -> None:
        if self.dim < 1 or not self.arms:
            raise ValueError("a bandit needs at least one arm and one context feature")
        for arm in self.arms:
            if arm not in self.models:
                self.models[arm] = LinearArm.fresh(self.dim, self.ridge, self.prior.get(arm))

    def _x(self, context: Sequence[float] | np.ndarray) -> np.ndarray:
        x = np.asarray(context, dtype=float)
        if x.shape != (self.dim,):
            raise ValueError(f"context has shape {x.shape}, expected ({self.dim},)")
        if not np.all(np.isfinite(x)):
            raise ValueError("context has a non-finite value")
        return x

    def score(
        self,
        contexts: Mapping[str, Sequence[float] | np.ndarray],
        mode: Mode = "greedy",
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        """Each arm's score in its own context (arms missing from `contexts` are not scored)."""
        if mode == "thompson" and rng is None:
            raise ValueError("Thompson sampling needs a random generator (seed it for reproducible runs)")
        scores: dict[str, float] = {}
        for arm in self.arms:  # a fixed order, so the same generator gives the same draws
            if arm not in contexts:
                continue
            x = self._x(contexts[arm])
            model = self.models[arm]
            mean = model.mean()
            if mode == "greedy":
                scores[arm] = float(x @ mean)
            elif mode == "ucb":
                width = math.sqrt(max(float(x @ np.linalg.solve(model.A, x)), 0.0))
                scores[arm] = float(x @ mean) + self.alpha * self.noise * width
            else:
                assert rng is not None
                cov = self.noise**2 * np.linalg.inv(model.A)
                cov = (cov + cov.T) / 2  # symmetric to rounding, as the Cholesky factor wants
                theta = rng.multivariate_normal(mean, cov, method="cholesky")
                scores[arm] = float(x @ theta)
        return scores

    def update(self, arm: str, context: Sequence[float] | np.ndarray, reward: float) -> None:
        if arm not in self.models:
            raise KeyError(f"unknown arm {arm!r}")
        if not np.isfinite(reward):
            raise ValueError("reward must be finite")
        self.models[arm].update(self._x(context), float(reward))

    def observations(self) -> dict[str, int]:
        return {arm: self.models[arm].n for arm in self.arms}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the statistics, rounded to 12 significant digits so the file hashes stably."""
        return {
            "arms": list(self.arms),
            "dim": self.dim,
            "ridge": self.ridge,
            "noise": self.noise,
            "alpha": self.alpha,
            "models": {
                arm: {
                    "A": [[float(f"{v:.12g}") for v in row] for row in m.A],
                    "b": [float(f"{v:.12g}") for v in m.b],
                    "n": m.n,
                }
                for arm, m in self.models.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Any) -> LinearBandit:
        """The bandit `to_dict` wrote; anything else (a file may come from someone else) is a
        `ValueError` saying what is wrong, never a wrong ranking: every number finite, every A
        symmetric positive definite (its posterior exists), the shapes those of `dim`."""
        try:
            arms = tuple(str(a) for a in data["arms"])
            dim = int(data["dim"])
            settings = {key: float(data[key]) for key in ("ridge", "noise", "alpha")}
            models = {
                str(arm): LinearArm(A=np.asarray(m["A"], dtype=float), b=np.asarray(m["b"], dtype=float), n=int(m["n"]))
                for arm, m in data["models"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ValueError(f"the bandit is not of the shape tandem writes ({type(exc).__name__}: {exc})") from None
        if not all(math.isfinite(v) and v > 0 for v in (settings["ridge"], settings["noise"])) or not (
            math.isfinite(settings["alpha"]) and settings["alpha"] >= 0
        ):
            raise ValueError(f"ridge and noise must be positive and alpha at least 0, got {settings}")
        for arm, m in models.items():
            if m.A.shape != (dim, dim) or m.b.shape != (dim,):
                raise ValueError(f"arm {arm!r}: statistics do not match dimension {dim}")
            if not (np.isfinite(m.A).all() and np.isfinite(m.b).all()) or m.n < 0:
                raise ValueError(f"arm {arm!r}: its statistics hold a non-finite number or a negative count")
            if not np.allclose(m.A, m.A.T) or np.linalg.eigvalsh(m.A).min() <= 0:
                raise ValueError(f"arm {arm!r}: its matrix A is not symmetric positive definite")
        return cls(
            arms=arms, dim=dim, ridge=settings["ridge"], noise=settings["noise"], alpha=settings["alpha"], models=models
        )
