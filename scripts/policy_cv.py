"""Which learned Scientist generalises to a task it never saw: leave-one-task-out cross-validation
over kept training runs.

Writes docs/policy-cv.md (generated; no number typed by hand) and, with `--out`, the policy the
cross-validation prefers, learnt from every run, to evaluate with scripts/learning_eval.py:

    .venv/bin/tandem train --episodes 56 --out /tmp/s2.json --max-iters 10 --workers 2 --seed 2 --keep-runs
    .venv/bin/python scripts/policy_cv.py /tmp/s2.training/runs/* --out /tmp/cv.json
    .venv/bin/python scripts/learning_eval.py --policy /tmp/cv.json --seeds 0,1,2 --max-iters 10 \\
        --work /tmp/tandem-learning-eval-cv --out docs/learning-eval-cv.md

Why: the held-out evaluation (docs/learning.md) found the learned policy opening with moves that
a few training tasks rewarded richly and that do not pay on new data. Whether a setting of the
learner transfers to new tasks can be asked of the training pool itself, without looking at an
evaluation task: learn from every task but one, and score how well the policy ranks the moves of
the task left out. The settings tried are the prior strength λ, the clip of the learning signal
(a few tasks' huge normalised gains dominate a linear fit), and which context features the
weights may use (a feature left out keeps its weight at the prior's 0, so the policy file is
still the one format `tandem run --policy` reads).

Scores, each averaged over the left-out tasks:
- rank correlation (Spearman) between the policy's score of each played move, in the context it
  was played in, and the learning signal it earned: does the policy order the moves as they paid?
  Scale-free, so comparable across clips; the untrained prior (the playbook's order) is the
  reference every setting must beat.
- squared error of the predicted signal (the signal clipped at ±REWARD_CLIP as the learner sees
  it by default), for the settings' calibration.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from tandem.benchmarks.learning import Step, run_steps, tandem_version
from tandem.nodes.agents.learned_executor import learn_executor
from tandem.nodes.agents.learned_scientist import (
    FEATURES,
    MOVE_FEATURES,
    REWARD_CLIP,
    SHARED_FEATURES,
    LearnedScientist,
    learn,
    new_policy,
)
from tandem.tools.policy_file import write_policy

ROOT = Path(__file__).resolve().parents[1]

SEARCH_STATE = SHARED_FEATURES[SHARED_FEATURES.index("progress") :]  # the search state, after the profile
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "all": FEATURES,
    "task type + search state + move": ("bias", "regression", "binary", "multiclass", *SEARCH_STATE, *MOVE_FEATURES),
    "search state + move": ("bias", *SEARCH_STATE, *MOVE_FEATURES),
    "move only": ("bias", *MOVE_FEATURES),
    "bias only": ("bias",),
}
PROGRESS = FEATURES.index("progress")
RIDGES = (2.0, 5.0, 10.0, 20.0, 50.0)
CLIPS = (1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Setting:
    features: str
    ridge: float
    clip: float

    def label(self) -> str:
        return f"{self.features}, λ={self.ridge:g}, clip ±{self.clip:g}"


def fit(setting: Setting, steps: Sequence[Step]) -> dict[str, Any]:
    """A new policy with this setting, learnt from `steps` (as `tandem learn` would)."""
    policy = new_policy(ridge=setting.ridge, features_used=FEATURE_SETS[setting.features], signal_clip=setting.clip)
    return learn(policy, steps)


def predictions(policy: dict[str, Any], steps: Sequence[Step]) -> np.ndarray:
    """The policy's greedy score of each step's played move, in that step's context, as a run's
    Scientist scores it (its features only)."""
    scientist = LearnedScientist(policy)
    return np.array(
        [
            scientist.bandit.score({move: np.asarray(context) * scientist.mask}, "greedy")[move]
            for move, context, _ in steps
        ]
    )


@dataclass(frozen=True)
class HeldOut:
    """How one policy scored one left-out task's moves."""

    within_stage: float
    """Spearman ρ of score against signal after removing each stage's mean from both."""
    overall: float
    """Spearman ρ of score against signal over all the task's moves."""
    mse: float


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b).statistic) if np.ptp(a) > 1e-12 and np.ptp(b) > 1e-12 else 0.0


def held_out_scores(policy: dict[str, Any], steps: Sequence[Step]) -> HeldOut:
    """The policy's scores on one left-out task's steps.

    The decision a Scientist makes is which move to play *at this point of the search*; later moves
    earn less whatever they are, so a score that only tracks the stage would correlate with the
    signal overall without choosing better. The first measure therefore centres the scores and the
    signals of the moves played at the same stage (the same `progress`, i.e. the same iteration)
    before correlating them."""
    predicted = predictions(policy, steps)
    signal = np.array([s for *_, s in steps])
    stage = np.array([round(context[PROGRESS], 6) for _, context, _ in steps])
    centred_pred, centred_signal = predicted.copy(), signal.copy()
    for value in np.unique(stage):
        at = stage == value
        centred_pred[at] -= predicted[at].mean()
        centred_signal[at] -= signal[at].mean()
    return HeldOut(
        _rho(centred_pred, centred_signal), _rho(predicted, signal), float(np.mean((predicted - signal) ** 2))
    )


def task_of(run_dir: Path) -> str:
    """A training episode's task, from its run id (`ep00012-<task>`)."""
    return run_dir.name.split("-", 1)[1] if run_dir.name.startswith("ep") and "-" in run_dir.name else run_dir.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("runs", nargs="+", help="run folders kept by `tandem train --keep-runs`")
    parser.add_argument("--out", help="write the policy of the best setting, learnt from every run, here")
    parser.add_argument("--page", default=str(ROOT / "docs" / "policy-cv.md"))
    args = parser.parse_args(argv)

    started = time.perf_counter()
    by_task: dict[str, list[Step]] = defaultdict(list)
    executor_steps: list[Step] = []
    runs: list[str] = []
    for given in args.runs:
        folder = Path(given)
        if not (folder / "experiments.jsonl").exists():
            continue
        scientist, executor = run_steps(folder)
        by_task[task_of(folder)] += scientist
        executor_steps += executor
        runs.append(folder.name)
    tasks = sorted(by_task)
    if len(tasks) < 3:
        print(f"policy_cv: need runs of at least 3 tasks, got {len(tasks)}", file=sys.stderr)
        return 2

    def cross_validate(setting: Setting | None) -> list[HeldOut]:
        out = []
        for left_out in tasks:
            if setting is None:
                policy = new_policy()  # the untrained prior: the playbook's order
            else:
                policy = fit(setting, [s for t in tasks if t != left_out for s in by_task[t]])
            out.append(held_out_scores(policy, by_task[left_out]))
        return out

    def mean(scores: list[HeldOut], field: str) -> float:
        return float(np.mean([getattr(h, field) for h in scores]))

    settings = [Setting(f, r, c) for f, r, c in product(FEATURE_SETS, RIDGES, CLIPS)]
    results = {s: cross_validate(s) for s in settings}
    prior = cross_validate(None)
    trained = Setting("all", 2.0, REWARD_CLIP)  # what `tandem train` learns today
    ranked = sorted(settings, key=lambda s: (-mean(results[s], "within_stage"), mean(results[s], "mse")))
    best = ranked[0]

    def row(name: str, scores: list[HeldOut]) -> str:
        wins = sum(h.within_stage > p.within_stage for h, p in zip(scores, prior, strict=True))
        return (
            f"| {name} | {mean(scores, 'within_stage'):+.3f} | {wins} of {len(tasks)} "
            f"| {mean(scores, 'overall'):+.3f} | {mean(scores, 'mse'):.3f} |"
        )

    n_steps = sum(len(v) for v in by_task.values())
    lines = [
        "# Which learned policy transfers to a new task: leave-one-task-out cross-validation",
        "",
        f"Generated by `.venv/bin/python scripts/policy_cv.py RUNS{' --out ' + args.out if args.out else ''}` "
        f"({time.strftime('%Y-%m-%d')}, {platform.machine()}, {time.perf_counter() - started:.1f} s) "
        f"from {len(runs)} kept training runs: {n_steps} Scientist moves on {len(tasks)} training-pool tasks "
        f"({', '.join(tasks)}). No evaluation task is read. Do not edit by hand.",
        "",
        "For each setting, each task in turn is left out, a policy is learnt from the other tasks' moves, and "
        "the left-out task's moves are scored by how the policy scores the move played, in the context it was "
        "played in, against the learning signal it earned. **ρ within stage** (the measure settings are "
        "ranked by): Spearman correlation after removing, from scores and signals alike, the mean of the "
        "moves played at the same iteration, since a Scientist chooses among moves at one point of the "
        "search and later moves earn less whatever they are. 'Beats the prior' counts the left-out tasks "
        "on which it is higher than the untrained prior's (the playbook's order). ρ overall: the same "
        f"without the centring. MSE: squared error of the score against the signal clipped at ±{REWARD_CLIP:g}.",
        "",
        "| setting | ρ within stage | beats the prior on | ρ overall | MSE |",
        "|---|---|---|---|---|",
        row("untrained prior (the playbook's order)", prior),
        row(f"as `tandem train` learns ({trained.label()})", results[trained]),
        *(row(s.label() + (" **(best)**" if s == best else ""), results[s]) for s in ranked[:15]),
        "",
        f"The best of {len(settings)} settings (λ in {', '.join(f'{r:g}' for r in RIDGES)}; clip in "
        f"{', '.join(f'±{c:g}' for c in CLIPS)}; feature sets: "
        + "; ".join(f"{name} = {', '.join(cols)}" for name, cols in FEATURE_SETS.items() if name != "all")
        + f"): **{best.label()}**.",
        "",
        "Per left-out task, ρ within stage:",
        "",
        "| left-out task | moves | prior | best setting | as trained |",
        "|---|---|---|---|---|",
        *(
            f"| {t} | {len(by_task[t])} | {p.within_stage:+.3f} | {b.within_stage:+.3f} | {a.within_stage:+.3f} |"
            for t, p, b, a in zip(tasks, prior, results[best], results[trained], strict=True)
        ),
    ]
    if args.out:
        policy = fit(best, [s for t in tasks for s in by_task[t]])
        policy = learn_executor(policy, executor_steps)
        provenance = {
            **policy["provenance"],
            "tasks": tasks,
            "runs": runs,
            "steps": n_steps,
            "selected_by": f"scripts/policy_cv.py, leave-one-task-out cross-validation: {best.label()}",
            "tandem_version": tandem_version(),
        }
        written = write_policy(args.out, {**policy, "provenance": provenance})
        lines += ["", f"The best setting learnt from every run: `{args.out}`, hash `{written['hash'][:16]}`."]
    Path(args.page).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
