"""A seeded Optuna TPE search that lives in the ledger: replayed, asked once, thrown away.

The Scientist does not keep a study between steps (a step may be the first after a crash, a
resume or a fork). Each time it wants a trial it builds a fresh in-memory study, replays the
earlier trials from the ledger with `study.add_trial`, and asks the TPE sampler, seeded from the
run's seed and the number of trials so far, for one new point. The same ledger therefore always
gives the same next trial, in any process, and the trial itself is an ordinary ledger entry (a
`set_params` proposal) that the verifier and the rewards judge like any other.

Pruning across folds works the same way: a trial's cross-validation reports its running mean
after each fold to a fresh study that holds the anchor's and the earlier trials' running means
(from their fold scores in the ledger, in the same fold order), and Optuna's median pruner stops
it once it runs below their median; the trial is then recorded as pruned, not failed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.pruners import MedianPruner
from optuna.samplers import TPESampler
from optuna.trial import TrialState, create_trial

from tandem.tools.spec import Param

TUNE_MOVE = "tune"
"""The ledger's name for a trial of the search (the Scientist's move; the evaluator prunes only these)."""
STARTUP_TRIALS = 5
"""Random points before TPE models the history (Optuna's default is 10; our searches are short)."""
ATTEMPTS = 25
"""Points asked per step before giving up when every one is a spec already tried."""


PRUNE_STARTUP_TRIALS = 3
"""Complete cross-validations (the anchor counts) before any trial may be pruned."""
PRUNE_WARMUP_FOLDS = 2
"""Folds every trial runs before it may be pruned: one fold's score is too noisy to stop on."""


@dataclass(frozen=True)
class Trial:
    """An earlier point of the search and its mean CV score (None: the candidate failed); a
    pruned trial has its running means up to where it stopped."""

    params: Mapping[str, Any]
    value: float | None
    fold_means: tuple[float, ...] = ()
    pruned: bool = False


def running_means(fold_scores: Sequence[float]) -> list[float]:
    """The mean of the first 1, 2, … fold scores: what a trial reports after each fold."""
    scores = [float(v) for v in fold_scores]
    return [sum(scores[: i + 1]) / (i + 1) for i in range(len(scores))]


def fold_pruner(
    history: Sequence[Sequence[float]],
    *,
    maximize: bool,
    startup_trials: int = PRUNE_STARTUP_TRIALS,
    warmup_folds: int = PRUNE_WARMUP_FOLDS,
) -> Callable[[int, float], bool]:
    """`should_stop(fold, running_mean)` for a new trial, against earlier complete trials' fold scores.

    A fresh in-memory study holds each earlier trial's running means as its intermediate values;
    the new trial reports its own after each fold (0-based), and Optuna's `MedianPruner` stops it
    when its best running mean so far is worse than the median of the earlier trials' at that
    fold, once `startup_trials` complete trials exist and `warmup_folds` folds have run. The
    median pruner draws no random numbers, so the same ledger always prunes at the same fold.
    """
    optuna.logging.set_verbosity(logging.WARNING)
    pruner = MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_folds - 1)
    study = optuna.create_study(direction="maximize" if maximize else "minimize", pruner=pruner)
    for scores in history:
        means = running_means(scores)
        if not means or not all(math.isfinite(m) for m in means):
            continue
        study.add_trial(
            create_trial(value=means[-1], intermediate_values=dict(enumerate(means)), state=TrialState.COMPLETE)
        )
    trial = study.ask()

    def should_stop(fold: int, running_mean: float) -> bool:
        if not math.isfinite(running_mean):
            return False  # a fold that could not be scored: the whole CV decides, not the pruner
        trial.report(running_mean, fold)
        return bool(trial.should_prune())

    return should_stop


def trial_pruner(
    ledger: Sequence[Mapping[str, Any]], move: str | None, anchor: int | None, metric: str, *, maximize: bool
) -> Callable[[int, float], bool] | None:
    """The pruner of a search trial (None for any other proposal): its history is the anchor's
    fold scores and those of every earlier complete trial on the same anchor."""
    if move != TUNE_MOVE or anchor is None or not 0 <= anchor < len(ledger):
        return None
    same = [r for r in ledger if r["move"] == TUNE_MOVE and r["base_experiment"] == anchor]
    history = [
        r["fold_scores"].get(metric, []) for r in [ledger[anchor], *same] if r["status"] == "ok" and r["fold_scores"]
    ]
    return fold_pruner(history, maximize=maximize)


def distributions(space: Mapping[str, Param]) -> dict[str, BaseDistribution]:
    """Optuna distributions for a family's search space (tools/spec.py: SEARCH_SPACES)."""
    out: dict[str, BaseDistribution] = {}
    for name, param in space.items():
        match param.kind:
            case "int":
                out[name] = IntDistribution(int(param.low or 0), int(param.high or 0), log=param.log)
            case "float":
                out[name] = FloatDistribution(float(param.low or 0.0), float(param.high or 0.0), log=param.log)
            case "choice":
                out[name] = CategoricalDistribution(param.choices)
            case "bool":
                out[name] = CategoricalDistribution((False, True))
    return out


def _replayable(params: Mapping[str, Any], dists: Mapping[str, BaseDistribution]) -> dict[str, Any] | None:
    """The trial's parameters inside the space, or None when one lies outside it."""
    kept = {k: v for k, v in params.items() if k in dists}
    for name, value in kept.items():
        dist = dists[name]
        try:
            if not dist._contains(dist.to_internal_repr(value)):
                return None
        except (ValueError, TypeError):
            return None
    return kept or None


def _tidy(value: Any) -> Any:
    """Four significant digits for floats: readable in the ledger, and what is replayed later."""
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        return float(f"{value:.4g}")
    return value


def suggest(
    space: Mapping[str, Param],
    trials: Sequence[Trial],
    *,
    maximize: bool,
    seed: int,
    avoid: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any] | None:
    """The next point of a seeded TPE search given the trials so far; None when every point
    asked (`ATTEMPTS` of them) is one `avoid` rejects (a spec already in the ledger)."""
    optuna.logging.set_verbosity(logging.WARNING)  # one line per trial otherwise
    dists = distributions(space)
    sampler = TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
    for trial in trials:
        params = _replayable(trial.params, dists)
        if params is None:
            continue
        finite = trial.value is not None and math.isfinite(trial.value)
        means = {i: m for i, m in enumerate(trial.fold_means) if math.isfinite(m)}
        if trial.pruned and means:  # TPE reads a pruned trial by its last running mean
            state, intermediate = TrialState.PRUNED, means
        else:
            state, intermediate = (TrialState.COMPLETE if finite else TrialState.FAIL), None
        study.add_trial(
            create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                value=float(trial.value) if finite and state == TrialState.COMPLETE else None,  # type: ignore[arg-type]
                intermediate_values=intermediate,
                state=state,
            )
        )
    for _ in range(ATTEMPTS):
        asked = study.ask(dists)
        params = {k: _tidy(v) for k, v in asked.params.items()}
        if avoid is None or not avoid(params):
            return params
        study.tell(asked, state=TrialState.FAIL)  # a repeat: ask elsewhere
    return None


__all__ = ["TUNE_MOVE", "Trial", "distributions", "fold_pruner", "running_means", "suggest", "trial_pruner"]
