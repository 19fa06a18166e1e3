"""A seeded Optuna TPE search that lives in the ledger: replayed, asked once, thrown away.

The Scientist does not keep a study between steps (a step may be the first after a crash, a
resume or a fork). Each time it wants a trial it builds a fresh in-memory study, replays the
earlier trials from the ledger with `study.add_trial`, and asks the TPE sampler, seeded from the
run's seed and the number of trials so far, for one new point. The same ledger therefore always
gives the same next trial, in any process, and the trial itself is an ordinary ledger entry (a
`set_params` proposal) that the verifier and the rewards judge like any other.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import TPESampler
from optuna.trial import TrialState, create_trial

from tandem.tools.spec import Param

STARTUP_TRIALS = 5
"""Random points before TPE models the history (Optuna's default is 10; our searches are short)."""
ATTEMPTS = 25
"""Points asked per step before giving up when every one is a spec already tried."""


@dataclass(frozen=True)
class Trial:
    """An earlier point of the search and its mean CV score (None: the candidate failed)."""

    params: Mapping[str, Any]
    value: float | None


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
        study.add_trial(
            create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                value=float(trial.value) if finite else None,  # type: ignore[arg-type]
                state=TrialState.COMPLETE if finite else TrialState.FAIL,
            )
        )
    for _ in range(ATTEMPTS):
        asked = study.ask(dists)
        params = {k: _tidy(v) for k, v in asked.params.items()}
        if avoid is None or not avoid(params):
            return params
        study.tell(asked, state=TrialState.FAIL)  # a repeat: ask elsewhere
    return None


__all__ = ["Trial", "distributions", "suggest"]
