"""The Executor's learnt decision: how to fill an open choice the Scientist left ("more regularisation").

The levels of a `Regularise` change (mild, medium, strong: graph/messages.py) are the arms of a
`tools.bandit.LinearBandit` whose context is what the Executor sees of the task and the family
it turns; it learns from the Executor's own reward (fidelity × gain minus its penalties,
normalised like the Scientist's). Untrained, every arm is at a prior that prefers `medium`, the
fixed filling, so a policy without Executor data fills as the heuristic Executor always did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from tandem.graph.messages import LEVELS, Level, Regularise, regularised
from tandem.graph.state import ExperimentRecord, TaskInfo
from tandem.nodes.agents.base import ExecutorRequest
from tandem.nodes.agents.learned_scientist import explore_seed_of, normalised_reward
from tandem.tools.bandit import MODES, LinearBandit, Mode
from tandem.tools.data import InputError
from tandem.tools.profile import DatasetProfile
from tandem.tools.spec import FAMILIES, ModelSpec

EXECUTOR_FEATURES: tuple[str, ...] = (
    "bias",
    "log_rows",
    "share_numeric",
    "regression",
    "binary",
    "multiclass",
    "linear_family",
    "tree_family",
    "more",
)
ARMS: tuple[str, ...] = tuple(LEVELS)
PRIOR = {"mild": -0.01, "medium": 0.0, "strong": -0.02}
"""Bias priors: medium first, as the fixed filling; then mild, then strong."""


def executor_context(task: TaskInfo, profile: DatasetProfile, family: str, direction: str) -> list[float]:
    usable = profile.usable()
    kinds = [c.kind for c in usable]
    linear = family in FAMILIES and FAMILIES[family].linear
    return [
        1.0,
        math.log10(max(task["n_dev_rows"], 1)) / 5.0,
        kinds.count("numeric") / max(len(kinds), 1),
        float(task["task_type"] == "regression"),
        float(task["task_type"] == "binary"),
        float(task["task_type"] == "multiclass"),
        float(linear),
        float(not linear),
        float(direction == "more"),
    ]


def new_executor_policy(*, ridge: float = 2.0, noise: float = 0.5) -> dict[str, Any]:
    prior = {arm: [PRIOR[arm]] + [0.0] * (len(EXECUTOR_FEATURES) - 1) for arm in ARMS}
    bandit = LinearBandit(arms=ARMS, dim=len(EXECUTOR_FEATURES), ridge=ridge, noise=noise, prior=prior)
    return {"features": list(EXECUTOR_FEATURES), "bandit": bandit.to_dict()}


def executor_bandit(policy: dict[str, Any]) -> LinearBandit:
    """The Executor's bandit in a policy file (untrained if the file has none). Its arms must be
    the levels and its dimension the features this tandem computes: anything else would fail in a
    run at the first open choice, so it is refused when the policy is read."""
    part = policy.get("executor") or new_executor_policy()
    features = part.get("features") if isinstance(part, dict) else None
    if not isinstance(features, list) or tuple(features) != EXECUTOR_FEATURES:
        raise InputError("policy file's Executor part was trained on other features; train it again")
    try:
        bandit = LinearBandit.from_dict(part.get("bandit"))
    except ValueError as exc:
        raise InputError(f"policy file: executor.bandit: {exc}") from None
    if set(bandit.arms) != set(ARMS) or bandit.dim != len(EXECUTOR_FEATURES):
        raise InputError(
            f"policy file: its Executor bandit has arms {', '.join(bandit.arms)} and dimension {bandit.dim}, "
            f"not {', '.join(ARMS)} and {len(EXECUTOR_FEATURES)}"
        )
    return bandit


class LearnedFilling:
    """The Executor's policy for open choices, frozen (greedy) in a run, Thompson in training."""

    def __init__(self, policy: dict[str, Any]) -> None:
        self.bandit = executor_bandit(policy)
        mode = policy.get("mode", "greedy")
        if mode not in MODES:
            raise InputError(f"policy file: mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode: Mode = mode
        self.seed = explore_seed_of(policy)

    def __call__(self, request: ExecutorRequest, change: Regularise) -> Level:
        family = request.base_spec.model.family if hasattr(request.base_spec, "model") else ""
        x = executor_context(request.task, request.profile, family, change.direction)
        rng = np.random.default_rng([self.seed, int(request.task["seed"]), 7919])
        scores = self.bandit.score({arm: x for arm in ARMS}, self.mode, rng)
        return cast(Level, max(ARMS, key=lambda a: (round(scores[a], 9), a == "medium")))


def executor_transitions(
    task: TaskInfo, profile: DatasetProfile, ledger: Sequence[ExperimentRecord]
) -> list[tuple[str, list[float], float]]:
    """(level, context, normalised Executor reward) for each filled open choice of a ledger.

    The level is read back from the spec: the one whose filling gives the parameters it holds.
    """
    out: list[tuple[str, list[float], float]] = []
    for record in ledger[1:]:
        opened = [c for c in record["changes"] if c.get("change") == "regularise" and c.get("level") is None]
        base_id = record["base_experiment"]
        if len(opened) != 1 or record["spec"] is None or base_id is None:
            continue
        base = ledger[base_id]["spec"] or {}
        if base.get("kind") != "pipeline" or record["spec"].get("kind") != "pipeline":
            continue
        model = ModelSpec.model_validate(base["model"])
        held = record["spec"]["model"]["params"]
        direction = opened[0].get("direction", "more")
        for level in ARMS:
            try:
                filled = regularised(model, direction, level)
            except Exception:  # a family without knobs: nothing the Executor chose
                break
            if all(held.get(k) == v for k, v in filled.items()):
                x = executor_context(task, profile, model.family, direction)
                out.append((level, x, normalised_reward(ledger, record, "executor", task["primary_metric"])))
                break
    return out


def learn_executor(policy: dict[str, Any], steps: Sequence[tuple[str, Sequence[float], float]]) -> dict[str, Any]:
    bandit = executor_bandit(policy)
    for level, context, reward in steps:
        bandit.update(level, context, reward)
    return {**policy, "executor": {"features": list(EXECUTOR_FEATURES), "bandit": bandit.to_dict()}}
