"""The learned Scientist: the playbook's moves, chosen by a contextual bandit trained on rewards.

Everything but the move choice is the heuristic Scientist's (the same moves, the same rule for
skipping ideas already tried, the same closing blend): only `order_moves` is replaced. Each move
is an arm of a `tools.bandit.LinearBandit`; its context is the vector `context_features` makes
from what the Scientist may see (the profile's meta-features and the search state). A run plays
its policy *frozen*: greedily on the posterior mean, so the same ledger gives the same proposal,
across processes and across a kill and resume. Training snapshots play Thompson draws whose
generator is seeded from the policy's seed, the task's seed and the ledger's length, so even an
exploring episode can be resumed and replayed exactly. docs/learning.md explains the method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tandem.graph.state import ExperimentRecord, TaskInfo
from tandem.nodes.agents.base import ScientistView
from tandem.nodes.agents.heuristic_scientist import (
    _MOVES,
    DEFAULT_PREFERENCES,
    MOVE_NAMES,
    HeuristicScientist,
    typical_candidate_seconds,
)
from tandem.tools.bandit import MODES, LinearBandit, Mode
from tandem.tools.data import InputError
from tandem.tools.metrics import reward_scale
from tandem.tools.profile import DatasetProfile
from tandem.tools.spec import FAMILIES

SHARED_FEATURES: tuple[str, ...] = (
    "bias",
    "log_rows",
    "log_columns",
    "share_numeric",
    "share_categorical",
    "share_text_or_date",
    "max_missing",
    "mean_missing",
    "target_skew",
    "class_imbalance",
    "regression",
    "binary",
    "multiclass",
    "progress",
    "log_iterations_left",
    "incumbent_linear",
    "incumbent_tree",
    "incumbent_ensemble",
    "share_moves_tried",
    "no_gain_streak",
)
MOVE_FEATURES: tuple[str, ...] = ("move_played", "move_mean_reward", "move_ever_significant")
FEATURES: tuple[str, ...] = SHARED_FEATURES + MOVE_FEATURES
"""The context vector of one move, in this order (a policy file lists the names it was trained with)."""

REWARD_CLIP = 5.0
PRIOR_SCALE = 0.05
SPREAD_FLOOR = 0.005


def baseline_spread(ledger: Sequence[ExperimentRecord], metric: str) -> float:
    """The baseline's fold-to-fold standard deviation in reward units (never below `SPREAD_FLOOR`).

    The unit of the learning signal: a gain the size of the baseline's own fold noise is worth 1
    on every task, whether the metric is an F1 of 0.9 or an RMSE of 30,000.
    """
    folds = np.asarray(ledger[0]["fold_scores"].get(metric) or [], dtype=float)
    if len(folds) < 2 or not np.all(np.isfinite(folds)):
        return SPREAD_FLOOR
    spread = float(folds.std(ddof=1)) / reward_scale(metric, float(folds.mean()))
    return max(spread, SPREAD_FLOOR)


def normalised_reward(ledger: Sequence[ExperimentRecord], record: ExperimentRecord, agent: str, metric: str) -> float:
    """An agent's ledger reward (gain, penalties and the token cost, as the rules pay it) divided by
    the baseline's fold spread, clipped to ±`REWARD_CLIP`. The ledger itself is never changed."""
    raw = float(record["rewards"].get(agent, 0.0))
    return float(np.clip(raw / baseline_spread(ledger, metric), -REWARD_CLIP, REWARD_CLIP))


@dataclass(frozen=True)
class SearchState:
    """What the features need besides the profile: the part of a `ScientistView` a ledger replays."""

    task: TaskInfo
    profile: DatasetProfile
    ledger: Sequence[ExperimentRecord]
    incumbent: int
    iterations_left: int
    patience: int
    time_budget: float | None = None

    @classmethod
    def of(cls, view: ScientistView) -> SearchState:
        return cls(
            view.task, view.profile, view.ledger, view.incumbent, view.iterations_left, view.patience, view.time_budget
        )


HORIZON = 40
"""The experiments left at which `log_iterations_left` reaches 1 and stays: the run default's
budget, above the policies' training budgets, so a run bounded by time (a bench's player has 1000
experiments) shows the policy no value it never saw."""


def experiments_left(state: SearchState) -> float:
    """How many more experiments the run's budgets allow: the experiments left, and with a time
    budget, the seconds the ledger's experiments have not used, at their recent pace; the smaller.

    Read from the ledger, not the clock, so a ledger replayed for learning (`transitions`) gives the
    features the run saw, and a resumed run proposes what it would have.
    """
    left = float(max(state.iterations_left, 0))
    if state.time_budget:
        spent = sum(float(record["fit_seconds"] or 0.0) for record in state.ledger)
        left = min(left, max(state.time_budget - spent, 0.0) / typical_candidate_seconds(state.ledger))
    return left


def shared_features(state: SearchState) -> list[float]:
    """The profile's meta-features and the search state, each scaled to about [0, 1]."""
    profile, task, ledger = state.profile, state.task, state.ledger
    usable = profile.usable()
    n = max(len(usable), 1)
    kinds = [c.kind for c in usable]
    missing = [c.missing_rate for c in usable] or [0.0]
    target = profile.target
    skew = float(np.clip(target.skew or 0.0, -5.0, 5.0)) / 5.0 if task["task_type"] == "regression" else 0.0
    imbalance = 1.0 - float(target.imbalance_ratio or 1.0) if task["task_type"] != "regression" else 0.0
    done = len(ledger) - 1
    left = experiments_left(state)
    incumbent = ledger[state.incumbent]["spec"] or {}
    family = incumbent.get("model", {}).get("family") if incumbent.get("kind") == "pipeline" else None
    linear = family is not None and family in FAMILIES and FAMILIES[family].linear
    played = {r["move"] for r in ledger[1:] if r["move"]}
    return [
        1.0,
        math.log10(max(task["n_dev_rows"], 1)) / 5.0,
        math.log10(n + 1) / 3.0,
        kinds.count("numeric") / n,
        kinds.count("categorical") / n,
        (kinds.count("text") + kinds.count("datetime")) / n,
        float(max(missing)),
        float(np.mean(missing)),
        skew,
        imbalance,
        float(task["task_type"] == "regression"),
        float(task["task_type"] == "binary"),
        float(task["task_type"] == "multiclass"),
        done / max(done + left, 1.0),
        math.log1p(min(left, HORIZON)) / math.log1p(HORIZON),
        float(linear),
        float(family is not None and not linear),
        float(family is None),
        len(played) / len(MOVE_NAMES),
        min(_no_gain_streak(ledger) / max(state.patience, 1), 1.0),
    ]


def move_features(state: SearchState, move: str) -> list[float]:
    """What this move earned so far in this run: how often it was played, its mean normalised
    reward, and whether it ever brought a significant gain."""
    metric = state.task["primary_metric"]
    mine = [r for r in state.ledger[1:] if r["move"] == move]
    mean = float(np.mean([normalised_reward(state.ledger, r, "scientist", metric) for r in mine])) if mine else 0.0
    return [min(len(mine), 3) / 3.0, mean / REWARD_CLIP, float(any(r["significant"] for r in mine))]


def context_vectors(state: SearchState) -> dict[str, list[float]]:
    """Each move's context: the shared features, then its own."""
    shared = shared_features(state)
    return {move: shared + move_features(state, move) for move in MOVE_NAMES}


def _no_gain_streak(ledger: Sequence[ExperimentRecord]) -> int:
    streak = 0
    for record in reversed(ledger[1:]):
        if record["significant"] or record["incumbent_after"] == record["id"]:
            break
        streak += 1
    return streak


def bandit_of(policy: dict[str, Any]) -> LinearBandit:
    """The Scientist's bandit in a policy file, over every move this tandem knows.

    A move the file never saw (added to the playbook after training) starts from the prior; a
    file trained on other features is refused, since its weights would mean something else.
    """
    if policy.get("role") != "scientist" or "bandit" not in policy:
        raise InputError("policy file has no Scientist policy (role 'scientist' with a 'bandit')")
    features = policy.get("features")
    if not isinstance(features, list) or tuple(features) != FEATURES:
        raise InputError("policy file was trained on other context features than this tandem computes; train it again")
    stored = LinearBandit.from_dict(policy["bandit"])
    if stored.dim != len(FEATURES):  # the names match but the statistics do not: numpy would fail mid-run
        raise InputError(
            f"policy file: its Scientist bandit has dimension {stored.dim}, not the {len(FEATURES)} features it lists"
        )
    known = {arm: model for arm, model in stored.models.items() if arm in MOVE_NAMES}
    return LinearBandit(
        arms=MOVE_NAMES,
        dim=len(FEATURES),
        ridge=stored.ridge,
        noise=stored.noise,
        alpha=stored.alpha,
        models=known,
        prior=playbook_prior(),
    )


def playbook_prior() -> dict[str, list[float]]:
    """The prior mean of each move's weights: zero but for the bias, which ranks the moves as the
    playbook does (PRIOR_SCALE per point of preference above the median preference). So an
    untrained policy *is* the playbook, and data move it only as far as the rewards earned say."""
    median = float(np.median(list(DEFAULT_PREFERENCES.values())))
    return {
        move: [PRIOR_SCALE * (DEFAULT_PREFERENCES.get(move, 0.0) - median)] + [0.0] * (len(FEATURES) - 1)
        for move in MOVE_NAMES
    }


def features_used_of(policy: dict[str, Any]) -> tuple[str, ...]:
    """The context features the policy's weights may use (every one in files written before there
    was a choice). A feature left out keeps its weight at the prior's 0: its column of every
    context is zeroed, in learning and in play, so the file keeps the one format and dimension."""
    used = policy.get("features_used", list(FEATURES))
    if not isinstance(used, list) or not set(used) <= set(FEATURES) or "bias" not in used:
        raise InputError("policy file: features_used must list context features of this tandem, bias among them")
    return tuple(name for name in FEATURES if name in used)


def feature_mask(policy: dict[str, Any]) -> np.ndarray:
    """1 for each context feature the policy uses, 0 for the others (`features_used_of`)."""
    used = set(features_used_of(policy))
    return np.array([1.0 if name in used else 0.0 for name in FEATURES])


def signal_clip_of(policy: dict[str, Any]) -> float:
    """The bound of the learning signal the policy learns from (`REWARD_CLIP` in older files)."""
    clip = policy.get("signal_clip", REWARD_CLIP)
    if not isinstance(clip, int | float) or isinstance(clip, bool) or not 0 < clip <= REWARD_CLIP:
        raise InputError(f"policy file: signal_clip must be a number above 0 and at most {REWARD_CLIP}, got {clip!r}")
    return float(clip)


def explore_seed_of(policy: dict[str, Any]) -> int:
    """The seed of a training snapshot's Thompson draws (0 when absent): a whole number from 0, as
    numpy's generator takes, so a bad one is refused when the policy is read, not mid-run."""
    seed = policy.get("explore_seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"policy file: explore_seed must be a whole number from 0, got {seed!r}")
    return seed


class LearnedScientist(HeuristicScientist):
    """The heuristic Scientist whose move order comes from a trained policy."""

    def __init__(self, policy: dict[str, Any]) -> None:
        super().__init__()
        self.bandit = bandit_of(policy)
        self.mask = feature_mask(policy)
        for check in (signal_clip_of, time_price_of):  # learning settings a run does not use, checked all the same
            check(policy)
        mode = policy.get("mode", "greedy")
        if mode not in MODES:
            raise InputError(f"policy file: mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode: Mode = mode
        self.seed = explore_seed_of(policy)

    def scores(self, view: ScientistView) -> dict[str, float]:
        """Each move's score in this context (the frozen policy's posterior mean, or a draw when exploring)."""
        rng = np.random.default_rng([self.seed, int(view.task["seed"]), len(view.ledger)])
        contexts = {move: np.asarray(x) * self.mask for move, x in context_vectors(SearchState.of(view)).items()}
        return self.bandit.score(contexts, self.mode, rng)

    def order_moves(self, view: ScientistView) -> list[str]:
        scores = self.scores(view)
        # ties (moves never rewarded in any context) keep the playbook's order
        return sorted(MOVE_NAMES, key=lambda m: (-round(scores[m], 9), -DEFAULT_PREFERENCES.get(m, 0.0)))

    def ranking(self, view: ScientistView) -> list[tuple[str, float]]:
        """(move, score) for the moves that still have a new proposal here, best first: the advice
        an LLM Scientist is given when a policy is (nodes/agents/prompts.py `policy_hint`)."""
        scores = self.scores(view)
        situation = self._situation(view)
        return [
            (move, scores[move])
            for move in self.order_moves(view)
            if self._first_new(situation, [(move, _MOVES[move])]) is not None
        ]


def iteration_share(ledger: Sequence[ExperimentRecord], time_budget: float | None, max_iters: int) -> float | None:
    """The seconds of one iteration's share of a finished run's time budget, or None without one:
    the time budget over the iterations it allowed, the fewer of `max_iters` and the budget at the
    run's own pace (its mean evaluation seconds per experiment after the baseline).

    Why not `time_budget / max_iters` alone: a bench run is bounded by time with `max_iters` 1000,
    so that share (0.06 s of 60 s) priced the 60 s bench's moves 11 to 84 times (median 26) higher
    than a share of the iterations the run could make. Where the experiment count binds (the training episodes), the
    share is the same as before; where the time binds, an experiment of the run's mean cost is one
    share.
    """
    if not time_budget:
        return None
    seconds = [float(r.get("fit_seconds") or 0.0) for r in ledger[1:]]
    pace = sum(seconds) / len(seconds) if seconds else 0.0
    return max(time_budget / max(max_iters, 1), pace)


def time_cost(record: ExperimentRecord, share: float | None, price: float) -> float:
    """What an experiment's evaluation time costs in the learning signal: `price` for every
    iteration's share of the run's time budget (`iteration_share`, `share` seconds) it used.

    Why: the reward pays gains and tokens but not compute, so a bandit cannot see that a move
    which earns as much as another in five times the seconds leaves the rest of the budget four
    moves fewer. A run without a time budget pays no price (its seconds buy nothing else).
    """
    if not price or not share:
        return 0.0
    return price * float(record.get("fit_seconds") or 0.0) / share


def transitions(
    task: TaskInfo,
    profile: DatasetProfile,
    ledger: Sequence[ExperimentRecord],
    max_iters: int,
    patience: int,
    *,
    time_budget: float | None = None,
    time_price: float = 0.0,
) -> list[tuple[str, list[float], float]]:
    """(move, context, learning signal) for every experiment of a finished ledger: the normalised
    reward less the experiment's `time_cost`, clipped to ±`REWARD_CLIP`.

    The context is rebuilt from the ledger as it stood before the experiment, exactly as the
    Scientist computed it then (the features read nothing else), so a run of any policy, even the
    playbook's, can be learnt from afterwards (off-policy: the moves it chose, the rewards they got).
    """
    metric = task["primary_metric"]
    share = iteration_share(ledger, time_budget, max_iters)
    out: list[tuple[str, list[float], float]] = []
    for i in range(1, len(ledger)):
        record = ledger[i]
        move = record["move"]
        if not move or move not in MOVE_NAMES:
            continue
        before = ledger[:i]
        state = SearchState(
            task, profile, before, before[-1]["incumbent_after"], max_iters - (i - 1), patience, time_budget
        )
        context = shared_features(state) + move_features(state, move)
        signal = normalised_reward(ledger, record, "scientist", metric) - time_cost(record, share, time_price)
        out.append((move, context, float(np.clip(signal, -REWARD_CLIP, REWARD_CLIP))))
    return out


def normalisation(time_price: float = 0.0, signal_clip: float = REWARD_CLIP) -> str:
    """The learning signal in words, for a policy file's provenance."""
    price = (
        f", less {time_price} for every iteration's share of the run's time budget (the budget over the "
        "iterations it allowed at the run's pace) the experiment's evaluation took (no price without a time budget)"
        if time_price
        else ""
    )
    return (
        "scientist reward from the ledger (gain when significant, minus the insignificance, invalid-proposal "
        f"and token penalties) divided by the baseline's fold standard deviation in reward units (floor {SPREAD_FLOOR})"
        f"{price}, clipped to ±{signal_clip}"
    )


def new_policy(
    *,
    ridge: float = 2.0,
    noise: float = 0.5,
    time_price: float = 0.0,
    features_used: Sequence[str] = FEATURES,
    signal_clip: float = REWARD_CLIP,
) -> dict[str, Any]:
    """An untrained Scientist policy: every arm at its prior, so it plays the playbook's order.
    `time_price` (`time_cost`), `features_used` (`features_used_of`) and `signal_clip` are the
    file's for good: every update to it is learnt with them."""
    settings = {"time_price": time_price, "features_used": list(features_used), "signal_clip": signal_clip}
    for check in (features_used_of, signal_clip_of, time_price_of):  # a bad setting is refused now, not in a run
        check(settings)
    return {
        "role": "scientist",
        "method": "linear-thompson",
        "features": list(FEATURES),
        "mode": "greedy",
        **settings,
        "bandit": LinearBandit(
            arms=MOVE_NAMES, dim=len(FEATURES), ridge=ridge, noise=noise, prior=playbook_prior()
        ).to_dict(),
        "provenance": {
            "tasks": [],
            "episodes": 0,
            "seeds": [],
            "runs": [],
            "normalisation": normalisation(time_price, signal_clip),
        },
    }


def time_price_of(policy: dict[str, Any]) -> float:
    """The price of time the policy is learnt at (0 in files written before there was one)."""
    price = policy.get("time_price", 0.0)
    if not isinstance(price, int | float) or isinstance(price, bool) or not 0 <= price <= REWARD_CLIP:
        raise InputError(f"policy file: time_price must be a number from 0 to {REWARD_CLIP}, got {price!r}")
    return float(price)


def learn(policy: dict[str, Any], steps: Sequence[tuple[str, Sequence[float], float]]) -> dict[str, Any]:
    """The policy after the bandit update on these (move, context, learning signal) steps, each
    context reduced to the policy's features and each signal bounded by its clip."""
    bandit, mask, clip = bandit_of(policy), feature_mask(policy), signal_clip_of(policy)
    for move, context, reward in steps:
        bandit.update(move, np.asarray(context, dtype=float) * mask, float(np.clip(reward, -clip, clip)))
    return {**policy, "bandit": bandit.to_dict()}
