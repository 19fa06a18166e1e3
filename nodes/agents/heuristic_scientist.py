"""The offline Scientist: a data-science playbook that reads the profile and the ledger.

It never looks at a dataset's name or known columns, only at what profiling and earlier
experiments show. Each *move* is one kind of idea (stronger family, class weights, a log target,
feature operations…) that yields candidate proposals in order; the Scientist plays the most
preferred move that still has an untried, valid proposal. The preferences live in one dict so a
learner can later re-weight the kinds of idea from the rewards they earned.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tandem.graph.messages import (
    REGULARISATION,
    AddFeature,
    Bag,
    BuildEnsemble,
    Proposal,
    Regularise,
    SetClassWeight,
    SetModel,
    SetParams,
    SetPreprocessing,
    SetRowFilter,
    SetTargetTransform,
    SetThreshold,
    UseColumns,
    apply_changes,
)
from tandem.graph.persistence import problem_of
from tandem.graph.state import ExperimentRecord
from tandem.nodes.agents.base import AgentReply, ScientistView
from tandem.tools.ensemble_selection import ENSEMBLE_POOL, select_ensemble
from tandem.tools.metrics import reward_scale
from tandem.tools.spec import (
    FAMILIES,
    SEARCH_SPACES,
    DatePartsOp,
    FeatureOp,
    GroupAggregateOp,
    LogOp,
    MissingIndicatorOp,
    Param,
    PipelineSpec,
    ProductOp,
    RatioOp,
    RowFilter,
    SpecError,
    SumOp,
    TextLengthOp,
    TextTopicsOp,
    TokenCountOp,
    check_against_data,
    spec_hash,
)
from tandem.tools.training import SMALL_DEV_ROWS
from tandem.tools.tuning import STARTUP_TRIALS, TUNE_MOVE, Trial, running_means, suggest

#: How much the playbook likes each kind of idea; higher is tried first. A learner may update these.
DEFAULT_PREFERENCES: dict[str, float] = {
    "stronger_family": 10.0,
    "target_transform": 9.5,
    "class_weight": 9.0,
    "linear_recipe": 8.8,
    "threshold": 8.5,
    "high_cardinality": 8.0,
    "boosting_schedule": 7.5,
    "text_and_dates": 7.0,
    "missing_indicators": 6.0,
    "interactions": 5.5,
    "boosting_shape": 5.0,
    "alternative_family": 5.2,
    "linear_tuning": 4.5,
    "outlier_rows": 6.5,
    "regularise": 4.0,
    "ensemble_selection": 3.5,
    "bag": 3.8,
    "ensemble": 3.0,
}

#: Primary metrics that move with the decision threshold or with class weights.
THRESHOLD_METRICS = {"f1", "f1_macro", "recall", "precision", "balanced_accuracy", "mcc", "accuracy"}
IMBALANCE_METRICS = {"f1", "f1_macro", "recall", "balanced_accuracy", "mcc"}
TREES = {"lightgbm", "catboost", "hist_gradient_boosting", "random_forest", "extra_trees", "decision_tree"}

Move = Callable[["_Situation"], Iterator[Proposal]]


@dataclass
class _Situation:
    """The view plus the derived facts every move needs."""

    view: ScientistView
    base_id: int
    base: PipelineSpec
    small_data: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task_type(self) -> str:
        return self.view.task["task_type"]

    def best_of(self, families: set[str]) -> int | None:
        """The best successful single-pipeline experiment of these families."""
        ok = [
            r
            for r in self.view.ledger
            if r["status"] == "ok"
            and r["spec"] is not None
            and r["spec"].get("kind") == "pipeline"
            and r["spec"]["model"]["family"] in families
        ]
        if not ok:
            return None
        sign = 1 if self.view.task["greater_is_better"] else -1
        return max(ok, key=lambda r: (sign * (r["primary"] or 0.0), -r["id"]))["id"]

    def lines(self) -> list[tuple[int, PipelineSpec]]:
        """The experiments worth improving: the base, then the best linear and the best tree model.

        Improving more than one line of models is what makes the final blend strong.
        """
        linear = {n for n, f in FAMILIES.items() if f.linear}
        ids = [self.base_id, self.best_of(linear), self.best_of(TREES)]
        unique = [i for i in dict.fromkeys(ids) if i is not None]
        return [(i, spec) for i in unique if isinstance(spec := self.view.spec_of(i), PipelineSpec)]


class HeuristicScientist:
    """Plays the playbook; deterministic, so the same ledger always leads to the same proposal."""

    def __init__(self, preferences: dict[str, float] | None = None) -> None:
        self.preferences = {**DEFAULT_PREFERENCES, **(preferences or {})}

    def propose(self, view: ScientistView) -> AgentReply[Proposal]:
        situation = self._situation(view)
        last_step = _last_step(view)
        if last_step or _no_gain_streak(view) >= view.patience:
            final = self._first_new(situation, [("ensemble_selection", _ensemble_selection), ("ensemble", _ensemble)])
            if final is not None:  # finish with a blend of the best distinct models
                return AgentReply(final)
            if not last_step:
                return AgentReply(self._go_on(situation, f"{view.patience} proposals in a row brought no gain"))
        moves = [(name, _MOVES[name]) for name in self.order_moves(view)]
        proposal = self._first_new(situation, moves)
        if proposal is None:
            return AgentReply(self._go_on(situation, "every idea in the playbook has been tried"))
        return AgentReply(proposal)

    def _go_on(self, situation: _Situation, why: str) -> Proposal:
        """The playbook's ideas are spent or stall: search the best families' parameters while the
        expected value of going on is worth it (docs/decisions.md), else deliver."""
        value = expected_value(situation.view)
        if value.worth:
            trial = self._first_new(situation, [("bag", _bag), (TUNE_MOVE, _tune)])
            if trial is not None:
                return trial
        return Proposal(action="deliver", rationale=f"Delivering the incumbent: {why}; {value.reason}.")

    def order_moves(self, view: ScientistView) -> list[str]:
        """The move-choice point: every move, the one to try first first. A learned policy replaces
        this (nodes/agents/learned_scientist.py); the playbook sorts by its fixed preferences."""
        return sorted(MOVE_NAMES, key=lambda name: -self.preferences.get(name, 0.0))

    def _situation(self, view: ScientistView) -> _Situation:
        incumbent = view.spec_of(view.incumbent)
        base_id = view.incumbent
        if not isinstance(incumbent, PipelineSpec):  # an ensemble leads: keep improving its best member
            singles = [
                r["id"] for r in view.ledger if r["status"] == "ok" and (r["spec"] or {}).get("kind") == "pipeline"
            ]
            sign = 1 if view.task["greater_is_better"] else -1
            base_id = max(singles, key=lambda i: sign * (view.ledger[i]["primary"] or 0.0))
        base = view.spec_of(base_id)
        assert isinstance(base, PipelineSpec)
        return _Situation(view=view, base_id=base_id, base=base, small_data=view.task["n_dev_rows"] < SMALL_DEV_ROWS)

    def _first_new(self, situation: _Situation, moves: list[tuple[str, Move]]) -> Proposal | None:
        """The first valid proposal that is neither a spec nor a change the ledger already holds
        (a change is tried again only on a new incumbent of another family: `repeats_a_change`)."""
        view = situation.view
        tried = view.tried_hashes
        rejected = {f["move"] for f in view.feedback if f["kind"] == "proposal" and f["move"]}
        tried_on = tried_families(view)
        columns = [c.name for c in view.profile.columns]
        for name, move in moves:
            if name in rejected:
                continue  # a human turned this kind of idea down
            for proposal in move(situation):
                base_id = proposal.base_experiment if proposal.base_experiment is not None else situation.base_id
                changes = [c.model_dump(mode="json") for c in proposal.changes]
                if repeats_a_change(view, tried_on, changes, base_id, situation.base_id):
                    continue  # this change already had its chance on an equivalent base
                try:
                    spec = apply_changes(view.spec_of(base_id), proposal.changes, view.spec_of)
                    check_against_data(spec, columns, situation.task_type)
                except (SpecError, ValueError):
                    continue
                if spec_hash(spec) in tried:
                    continue
                return proposal.model_copy(update={"move": name, "base_experiment": base_id})
        return None


def _change_key(changes: list[dict[str, Any]]) -> str:
    """A change as the ledger stores it, whichever move (or agent) proposed it."""
    return json.dumps(changes, sort_keys=True, default=str)


def _family(view: ScientistView, base_id: int | None) -> str:
    """The model family of an experiment, "ensemble" for a blend (or no base)."""
    base = view.ledger[base_id]["spec"] if base_id is not None else None
    return base["model"]["family"] if base and base.get("kind") == "pipeline" else "ensemble"


def tried_families(view: ScientistView) -> dict[str, set[str]]:
    """Each change the ledger holds, with the model families of the bases it was applied to."""
    tried: dict[str, set[str]] = {}
    for r in view.ledger[1:]:
        if r["changes"]:
            tried.setdefault(_change_key(r["changes"]), set()).add(_family(view, r["base_experiment"]))
    return tried


def repeats_a_change(
    view: ScientistView, tried_on: dict[str, set[str]], changes: list[dict[str, Any]], base_id: int, incumbent: int
) -> bool:
    """Whether proposing `changes` on `base_id` would try again a change the ledger already tried
    on an equivalent base (docs/decisions.md, "No silent duplicates").

    A change tried on one model of a family is not tried on another of the same family: a base that
    differs only in parameters or in another change is an equivalent base for it. It is tried again
    on a model of a new family only when that model is the incumbent (`incumbent`: the one the
    Scientist improves, the best single pipeline when a blend leads): a data scientist carries a
    change over to a new best model of another kind, not to every line of models in turn, which is
    how `set_class_weight(balanced)` used to take #2 and #3 of a five-experiment run.
    """
    families = tried_on.get(_change_key(changes))
    if families is None:
        return False
    return _family(view, base_id) in families or base_id != incumbent


def _no_gain_streak(view: ScientistView) -> int:
    """Proposals since the last one that brought a significant gain or a new best model (or since
    a human rejected a delivery: that asks for more search)."""
    since = max((f["iteration"] for f in view.feedback if f["kind"] == "delivery"), default=-1)
    streak = 0
    for record in reversed(view.ledger[1:]):
        if record["significant"] or record["incumbent_after"] == record["id"] or record["iteration"] <= since:
            break
        streak += 1
    return streak


# ---------------------------------------------------------------------------------------------
# The stop rule: the expected value of going on (docs/decisions.md, "When the heuristic Scientist
# stops").
# ---------------------------------------------------------------------------------------------

VALUE_WINDOW = 10
"""How many recent experiments estimate the gain per candidate."""
PRIOR_GAIN = 0.002
"""One pseudo-experiment with this gain (reward units), so a short history is not read as zero."""
MIN_VALUE = 0.001
"""Go on while the expected total gain of the candidates the budget still allows reaches this."""
TYPICAL_RECENT = 5
"""How many recent experiments give the typical candidate time."""
EXPERIMENT_BOUND = "in the experiment budget"
"""Ends a stop reason whose room to go on was the experiments left rather than the time (the
benchmarks page counts those runs as ended by the experiment budget)."""


@dataclass(frozen=True)
class GoingOn:
    """The expected value of going on, and how it was estimated."""

    worth: bool
    value: float
    reason: str


def incumbent_gains(view: ScientistView) -> list[float]:
    """Per experiment after the baseline, how much it improved the best mean CV score (reward units)."""
    metric = view.task["primary_metric"]
    sign = 1.0 if view.task["greater_is_better"] else -1.0
    best = view.ledger[0]["primary"]
    gains = []
    for record in view.ledger[1:]:
        score = record["primary"] if record["status"] == "ok" else None
        if score is None or best is None or not math.isfinite(score):
            gains.append(0.0)
            continue
        improvement = sign * (score - best)
        gains.append(max(improvement, 0.0) / reward_scale(metric, best))
        if improvement > 0:
            best = score
    return gains


def typical_candidate_seconds(ledger: Sequence[ExperimentRecord]) -> float:
    """The median time of the recent candidates (cached ones excluded: they cost nothing)."""
    recent = [r["fit_seconds"] for r in ledger[-TYPICAL_RECENT:] if r["fit_seconds"] and r["fit_seconds"] > 0]
    return float(statistics.median(recent)) if recent else 1.0


def candidates_left(view: ScientistView) -> dict[str, float]:
    """How many more candidates each budget allows (the last one is the blend): the experiments
    left, and the seconds left at the pace of the recent candidates (when the run has a time
    budget). The room to go on is the smallest."""
    room = {"experiments": float(max(view.iterations_left - 1, 0))}
    if view.seconds_left is not None:
        room["seconds"] = max(view.seconds_left, 0.0) / typical_candidate_seconds(view.ledger)
    return room


def expected_value(view: ScientistView) -> GoingOn:
    """Expected gain of going on = (recent gain per candidate) × (candidates the budget allows).

    The gain per candidate is the mean improvement of the best score over the last
    `VALUE_WINDOW` experiments, with one pseudo-experiment of `PRIOR_GAIN`; going on is worth
    it while the product reaches `MIN_VALUE` (0.1 point of a bounded metric, 0.1% of an
    unbounded one).

    On small data (`small_data_stalled`) an improvement counts only when it is significant, so a
    full window without one is worth nothing: the best CV score of more candidates on the same few
    folds rises by chance, and the benches' holdouts showed no gain from it.
    """
    if small_data_stalled(view):
        return GoingOn(
            worth=False,
            value=0.0,
            reason=(
                f"expected gain of going on 0.0000 (on small data, {view.task['n_dev_rows']} development rows, "
                f"none of the last {VALUE_WINDOW} experiments brought a significant gain: the best of more "
                "candidates on the same folds would rise by chance, not on new data)"
            ),
        )
    window = incumbent_gains(view)[-VALUE_WINDOW:]
    rate = (sum(window) + PRIOR_GAIN) / (len(window) + 1)
    room = candidates_left(view)
    left = min(room.values())
    value = rate * left
    # Name the budget that bounds the room when it is the experiment count: a time budget left
    # unused then says why, and which setting (--max-iters) would let the search go on.
    bound = f" {EXPERIMENT_BOUND}" if room["experiments"] < room.get("seconds", math.inf) else ""
    candidates = "candidate" if round(left) == 1 else "candidates"
    reason = (
        f"expected gain of going on {value:.4f} (about {rate:.5f} per candidate over the last "
        f"{len(window)} experiments, room for {left:.0f} more {candidates}{bound})"
    )
    return GoingOn(worth=value >= MIN_VALUE and left >= 1.0, value=value, reason=reason)


def small_data_stalled(view: ScientistView) -> bool:
    """Whether a small-data search (fewer development rows than `small_data_rows`, where delivery
    blends on the out-of-fold predictions) has gone `VALUE_WINDOW` experiments without a
    significant gain (docs/decisions.md, "When the heuristic Scientist stops").

    Why significance and not the best CV score: on a few hundred rows every extra candidate scored
    on the same folds is another draw whose best rises by chance (the winner's curse), and the
    prior of `expected_value` kept 300 s runs going for up to 280 candidates. Replayed on the
    benches' small-data ledgers, the blend delivered where this first held scored on the holdout
    as well as the one delivered at the end or better, in all but one run (docs/stop-rule-study.md).
    """
    window = view.ledger[1:][-VALUE_WINDOW:]
    return (
        len(window) == VALUE_WINDOW
        and not any(record["significant"] for record in window)
        and view.task["n_dev_rows"] < view.small_data_rows
    )


def _last_step(view: ScientistView) -> bool:
    """The last candidate the budget allows: time for the final blend."""
    if view.iterations_left <= 1:
        return True
    return view.seconds_left is not None and view.seconds_left < 2.0 * typical_candidate_seconds(view.ledger)


# ---------------------------------------------------------------------------------------------
# The seeded TPE search over the best two families' parameters (tools/tuning.py).
# ---------------------------------------------------------------------------------------------


TUNED_FAMILIES = 2
"""How many families the search studies on data of `SMALL_DEV_ROWS` development rows or more: the
best two by their best score so far. Below, only the best: every extra family's trials are more
candidates picked on the same few folds, whose winner's curse small data cannot afford (on the
60 s bench the second study gained on the larger tasks and lost on the small ones, docs/decisions.md)."""

TRIALS_PER_PARAMETER = 4
"""A study's share before the next family's turn: this many trials per parameter it searches (at
least Optuna's startup trials), so a linear model's one-parameter space does not take the rest of the
budget while the runner-up's nine parameters go unsearched."""


def _tune(s: _Situation) -> Iterator[Proposal]:
    """One trial of a seeded TPE search over the best families' parameters, replayed from the ledger.

    The two best families (by their best score, `TUNED_FAMILIES`; on small data the best one) are
    each a study; a study whose share of trials (`TRIALS_PER_PARAMETER` per parameter) is not yet
    spent goes first, the better family first, and once both have had their share the best
    family's goes on. A study's anchor is
    the best experiment of its family that is not itself a trial; every earlier trial on that anchor
    (its `set_params` change and mean CV score) is replayed, and the sampler's seed is the run's seed
    and the number of trials, so the same ledger always asks the same point.
    """
    sign = 1 if s.view.task["greater_is_better"] else -1
    ranked: list[str] = []
    for record in sorted(s.view.ledger, key=lambda r: (-sign * (r["primary"] or 0.0), r["id"])):
        spec = record["spec"] or {}
        if record["status"] == "ok" and spec.get("kind") == "pipeline" and spec["model"]["family"] not in ranked:
            ranked.append(spec["model"]["family"])
    studies = [study for family in ranked if (study := _study(s, family)) is not None]
    studies = studies[: 1 if s.small_data else TUNED_FAMILIES]
    due = [study for study in studies if len(study.trials) < study.share]
    for study in due or studies[:1]:
        yield from _trial(s, study)


@dataclass(frozen=True)
class _Study:
    """One family's search: its space, the experiment it starts from, and its trials so far."""

    family: str
    space: dict[str, Param]
    anchor: int
    trials: list[Trial]

    @property
    def share(self) -> int:
        return max(STARTUP_TRIALS, TRIALS_PER_PARAMETER * len(self.space))


def _study(s: _Situation, family: str) -> _Study | None:
    """`family`'s study as the ledger holds it; None when the family has no search space."""
    view = s.view
    space = SEARCH_SPACES.get(family)
    anchors = [
        r
        for r in view.ledger
        if r["status"] == "ok"
        and r["move"] != TUNE_MOVE
        and (r["spec"] or {}).get("kind") == "pipeline"
        and r["spec"]["model"]["family"] == family  # type: ignore[index]
    ]
    if not space or not anchors:
        return None
    sign = 1 if view.task["greater_is_better"] else -1
    anchor = max(anchors, key=lambda r: (sign * (r["primary"] or 0.0), -r["id"]))["id"]
    metric = view.task["primary_metric"]
    trials = [
        Trial(
            params=r["changes"][0]["params"],
            value=r["primary"] if r["status"] == "ok" else None,
            fold_means=tuple(running_means(r["fold_scores"].get(metric, []))),
            pruned=r["status"] == "pruned",
        )
        for r in view.ledger
        if r["move"] == TUNE_MOVE and r["base_experiment"] == anchor and r["changes"]
    ]
    return _Study(family=family, space=space, anchor=anchor, trials=trials)


def _trial(s: _Situation, study: _Study) -> Iterator[Proposal]:
    """The study's next point, unless every point asked is already in the ledger.

    A point is asked again elsewhere when `_first_new` would skip it: its spec is in the ledger, or
    its parameters were tried on another model of the family (`repeats_a_change`). The second
    matters when the anchor moves: the new anchor's study starts from the same seed, so its first
    points are the old study's, and skipping them without asking again ended runs with most of
    their time left ("every idea in the playbook has been tried").
    """
    view = s.view
    base = view.spec_of(study.anchor)
    assert isinstance(base, PipelineSpec)
    tried, tried_on = view.tried_hashes, tried_families(view)

    def repeats(params: dict[str, Any]) -> bool:
        change = SetParams(params=params)
        if repeats_a_change(view, tried_on, [change.model_dump(mode="json")], study.anchor, s.base_id):
            return True
        try:
            return spec_hash(apply_changes(base, [change], view.spec_of)) in tried
        except (SpecError, ValueError):
            return True

    params = suggest(
        study.space,
        study.trials,
        maximize=bool(view.task["greater_is_better"]),
        seed=view.task["seed"] * 7919 + len(study.trials),
        avoid=repeats,
    )
    if params is not None:
        yield Proposal(
            rationale=f"Trial {len(study.trials) + 1} of a seeded TPE search (Optuna) over {study.family}'s "
            f"parameters from experiment #{study.anchor}: the playbook's ideas are spent or stall and the "
            "budget remains.",
            base_experiment=study.anchor,
            changes=[SetParams(params=params)],
        )


# ---------------------------------------------------------------------------------------------
# The moves. Each yields proposals, most promising first; the Scientist skips those already tried.
# ---------------------------------------------------------------------------------------------


def _stronger_family(s: _Situation) -> Iterator[Proposal]:
    if s.base.model.family not in TREES:
        lgbm: dict[str, Any] = {}
        if s.small_data:  # few rows: shallower trees and a gentler rate generalise better
            lgbm = {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 10}
        yield Proposal(
            rationale="Gradient boosting captures non-linear effects and interactions the linear baseline cannot.",
            changes=[SetModel(family="lightgbm", params=lgbm), SetPreprocessing(settings={"numeric_imputer": "none"})],
        )
    yield from _unscaled_kernels(s)


def _target_transform(s: _Situation) -> Iterator[Proposal]:
    target = s.view.profile.target
    if s.task_type == "regression" and target.all_positive and (target.skew or 0.0) > 0.75:
        for base_id, _ in s.lines():
            yield Proposal(
                rationale=f"The target is right-skewed (skew {target.skew:.2f}) and positive: fit on log1p(target).",
                base_experiment=base_id,
                changes=[SetTargetTransform(transform="log")],
            )


def _class_weight(s: _Situation) -> Iterator[Proposal]:
    target = s.view.profile.target
    if (
        s.task_type == "regression"
        or (target.imbalance_ratio or 1.0) >= 0.6
        or s.view.task["primary_metric"] not in IMBALANCE_METRICS
    ):
        return
    for base_id, spec in s.lines():
        if FAMILIES[spec.model.family].class_weight:
            yield Proposal(
                rationale=f"Classes are imbalanced (minority/majority {target.imbalance_ratio:.2f}) and "
                f"{s.view.task['primary_metric']} rewards the minority class: balance the class weights.",
                base_experiment=base_id,
                changes=[SetClassWeight(class_weight="balanced")],
            )


def _threshold(s: _Situation) -> Iterator[Proposal]:
    if s.task_type == "binary" and s.view.task["primary_metric"] in THRESHOLD_METRICS:
        for base_id, _ in s.lines():
            yield Proposal(
                rationale=f"Tune the decision threshold for {s.view.task['primary_metric']} instead of using 0.5.",
                base_experiment=base_id,
                changes=[SetThreshold(threshold="tuned")],
            )


def _high_cardinality(s: _Situation) -> Iterator[Proposal]:
    """Each line that does not read the high-cardinality categoricals gets them, target-encoded:
    asked of each line's own columns, since another line (the linear recipe's one-hot columns)
    may have taken them already."""
    many = [c.name for c in s.view.profile.usable() if c.kind == "categorical" and c.n_unique > 20]
    for base_id, spec in s.lines():
        used = set(spec.columns.categorical) | set(spec.columns.high_cardinality)
        unused = [c for c in many if c not in used]
        if unused:
            yield Proposal(
                rationale=f"High-cardinality categoricals {unused} are unused: add them with target encoding.",
                base_experiment=base_id,
                changes=[UseColumns(columns=tuple(unused), role="high_cardinality")],
            )
    if s.base.columns.high_cardinality:
        yield Proposal(
            rationale="Frequency encoding is more robust than target encoding for rare categories.",
            changes=[SetPreprocessing(settings={"high_cardinality_encoder": "frequency"})],
        )


def _boosting_schedule(s: _Situation) -> Iterator[Proposal]:
    base_id = s.best_of({"lightgbm"})
    if base_id is None:
        return
    rows = s.view.task["n_dev_rows"]
    yield Proposal(
        rationale="A lower learning rate with more trees and row/column subsampling usually generalises better.",
        base_experiment=base_id,
        changes=[
            SetParams(
                params={
                    "learning_rate": 0.03,
                    "n_estimators": 600 if rows < 50_000 else 400,
                    "subsample": 0.8,
                    "subsample_freq": 1,
                    "colsample_bytree": 0.7,
                }
            )
        ],
    )


def _boosting_shape(s: _Situation) -> Iterator[Proposal]:
    base_id = s.best_of({"lightgbm"})
    if base_id is None:
        return
    rows = s.view.task["n_dev_rows"]
    leaf = max(20, rows // 200)
    yield Proposal(
        rationale=f"Require {leaf} rows per leaf and fewer leaves to curb overfitting on {rows} rows.",
        base_experiment=base_id,
        changes=[SetParams(params={"min_child_samples": min(leaf, 1000), "num_leaves": 15})],
    )
    yield Proposal(
        rationale="Add L2 regularisation to the leaf values.",
        base_experiment=base_id,
        changes=[SetParams(params={"reg_lambda": 5.0})],
    )
    if rows > 5000:
        yield Proposal(
            rationale="Plenty of rows: allow more leaves to capture finer interactions.",
            base_experiment=base_id,
            changes=[SetParams(params={"num_leaves": 63})],
        )


def _text_and_dates(s: _Situation) -> Iterator[Proposal]:
    existing = set(s.base.features)
    for name in s.view.profile.of_kind("text"):
        topics = TextTopicsOp(column=name)
        if topics not in existing:
            yield Proposal(
                rationale=(
                    f"{name!r} is free text: what it says can be read as {topics.n_topics} topics "
                    "(TF-IDF of its words and word pairs, reduced by SVD, learnt on each training fold)."
                ),
                changes=[AddFeature(feature=topics)],
            )
        ops: list[FeatureOp] = [TextLengthOp(column=name), TokenCountOp(column=name)]
        if not existing.issuperset(ops):
            yield Proposal(
                rationale=f"{name!r} is free text: its length and word count are cheap signals.",
                changes=[AddFeature(feature=op) for op in ops],
            )
    for name in s.view.profile.of_kind("datetime"):
        yield Proposal(
            rationale=f"{name!r} holds dates: add year, month, weekday and day of year.",
            changes=[AddFeature(feature=DatePartsOp(column=name))],
        )


def _missing_indicators(s: _Situation) -> Iterator[Proposal]:
    used = set(s.base.columns.numeric)
    gappy = [c.name for c in s.view.profile.usable() if c.name in used and c.missing_rate >= 0.05]
    if gappy:
        yield Proposal(
            rationale=f"Missingness itself may carry signal in {gappy}: add missing indicators.",
            changes=[AddFeature(feature=MissingIndicatorOp(columns=tuple(gappy)))],
        )


def _interactions(s: _Situation) -> Iterator[Proposal]:
    profile = s.view.profile
    numeric = set(s.base.columns.numeric)
    strong = [name for name, _ in profile.strongest if name in numeric]
    linear_id = s.best_of({n for n, f in FAMILIES.items() if f.linear})
    if linear_id is not None:
        yield Proposal(
            rationale="Power-transform all numerics (Yeo-Johnson) so a linear model sees them evenly.",
            base_experiment=linear_id,
            changes=[SetPreprocessing(settings={"numeric_transform": "power"})],
        )
        skewed = [
            c.name
            for c in profile.usable()
            if c.name in numeric and c.kind == "numeric" and (c.skew or 0) > 1.0 and (c.min or 0) >= 0
        ]
        if skewed:
            yield Proposal(
                rationale=f"Log-transform right-skewed numerics {skewed[:8]} so a linear model sees them evenly.",
                base_experiment=linear_id,
                changes=[AddFeature(feature=LogOp(columns=tuple(skewed[:8])))],
            )
    if len(strong) >= 3:
        yield Proposal(
            rationale=f"Sum of the three numerics most related to the target {strong[:3]}.",
            changes=[AddFeature(feature=SumOp(columns=tuple(strong[:3])))],
        )
    if len(strong) >= 2:
        a, b = strong[0], strong[1]
        yield Proposal(
            rationale=f"Interaction of the two strongest numerics {a!r} and {b!r}.",
            changes=[AddFeature(feature=ProductOp(left=a, right=b))],
        )
        minimum = profile.column(b).min
        if minimum is not None and minimum > 0:
            yield Proposal(
                rationale=f"Ratio of the two strongest numerics {a!r} / {b!r}.",
                changes=[AddFeature(feature=RatioOp(numerator=a, denominator=b))],
            )
    groups = [n for n, _ in profile.strongest if n in set(s.base.columns.categorical)]
    if strong and groups:
        yield Proposal(
            rationale=f"Mean of {strong[0]!r} within each {groups[0]!r} group, learnt on the training folds.",
            changes=[AddFeature(feature=GroupAggregateOp(group_by=groups[0], column=strong[0]))],
        )


def _linear_recipe(s: _Situation) -> Iterator[Proposal]:
    """A well-prepared linear model in one idea: its parts only pay off together."""
    linear_id = s.best_of({n for n, f in FAMILIES.items() if f.linear})
    if linear_id is None:
        return
    profile = s.view.profile
    categorical = [c.name for c in profile.usable() if c.kind == "categorical"]
    pooled = {"onehot_min_frequency": 5} if categorical else {}  # without one-hot columns it would do nothing
    changes: list[Any] = [SetPreprocessing(settings={"numeric_transform": "power", **pooled})]
    if categorical:
        changes.append(UseColumns(columns=tuple(categorical), role="categorical"))
    target = profile.target
    if s.task_type == "regression" and target.all_positive and (target.skew or 0.0) > 0.75:
        changes.append(SetTargetTransform(transform="log"))
    yield Proposal(
        rationale="A linear model wants evenly spread inputs (power transform), every categorical one-hot "
        "(rare levels pooled) and, for a skewed positive target, a log target — together.",
        base_experiment=linear_id,
        changes=changes,
    )


def _linear_tuning(s: _Situation) -> Iterator[Proposal]:
    linear = {n for n, f in FAMILIES.items() if f.linear}
    base_id = s.best_of(linear)
    if base_id is None:
        return
    family = s.view.spec_of(base_id).model.family  # type: ignore[union-attr]
    name = "C" if family == "logistic" else "alpha"
    values = (0.1, 10.0) if family == "logistic" else (10.0, 0.1, 100.0)
    for value in values:
        yield Proposal(
            rationale=f"Tune the regularisation of the linear model ({name}={value}).",
            base_experiment=base_id,
            changes=[SetParams(params={name: value})],
        )


def _outlier_rows(s: _Situation) -> Iterator[Proposal]:
    """A skewed regression target has a few extreme rows that pull a model (a linear one most):
    leave them out of the training rows only; every holdout row is still predicted and scored."""
    target = s.view.profile.target
    if s.task_type != "regression" or (target.skew or 0.0) <= 0.75:
        return
    for base_id, spec in s.lines():
        if spec.columns.numeric and spec.row_filter is None:
            yield Proposal(
                rationale=f"The target is skewed (skew {target.skew:.2f}): drop the 1% of training rows a "
                "ridge fit on the numeric columns explains worst (training folds only, never at predict).",
                base_experiment=base_id,
                changes=[SetRowFilter(row_filter=RowFilter(method="target_residual", share=0.01))],
            )


def _alternative_family(s: _Situation) -> Iterator[Proposal]:
    tree_prep = SetPreprocessing(settings={"numeric_imputer": "median", "scaler": "none"})
    forest = {"n_estimators": 400, "min_samples_leaf": 2, "max_features": 0.5}
    yield Proposal(
        rationale="CatBoost's ordered boosting on symmetric trees overfits less than LightGBM on small, "
        "noisy data, and handles missing values itself.",
        changes=[
            SetModel(family="catboost", params={"iterations": 500, "learning_rate": 0.05, "depth": 6}),
            SetPreprocessing(settings={"numeric_imputer": "none", "scaler": "none"}),
        ],
    )
    yield Proposal(
        rationale="A random forest is a strong, low-variance alternative to boosting.",
        changes=[SetModel(family="random_forest", params=forest), tree_prep],
    )
    yield Proposal(
        rationale="Extra trees add randomness that often helps on small, noisy data.",
        changes=[SetModel(family="extra_trees", params=forest), tree_prep],
    )
    yield Proposal(
        rationale="scikit-learn's histogram gradient boosting regularises differently from LightGBM.",
        changes=[
            SetModel(family="hist_gradient_boosting", params={"learning_rate": 0.05, "max_iter": 400}),
            SetPreprocessing(settings={"numeric_imputer": "none"}),
        ],
    )
    if s.task_type == "regression" and s.small_data:
        yield Proposal(
            rationale="On small data a kernel method on power-transformed inputs can rival trees.",
            changes=[
                SetModel(family="svr", params={"C": 10.0, "epsilon": 0.05}),
                SetPreprocessing(settings={"numeric_imputer": "median", "numeric_transform": "power"}),
            ],
        )


def _unscaled_kernels(s: _Situation) -> Iterator[Proposal]:
    """Small classification data whose columns share one scale (`DatasetProfile.shared_scale`:
    pixels, spectra, fingerprints) are where an RBF SVC and nearest neighbours beat trees, on the
    raw distances (docs/decisions.md, "An SVC family": on digits, 5-fold macro-F1 0.989 for an
    unscaled SVC and 0.986 for 5 distance-weighted neighbours, against 0.981 and 0.976 standardised).
    Proposed as stronger families, right after LightGBM: they cost seconds, and as the last of the
    alternatives a 60 s run reached them or not depending on how fast its LightGBM fits ran."""
    if s.task_type == "regression" or not s.small_data or not s.view.profile.shared_scale():
        return
    raw = SetPreprocessing(settings={"numeric_imputer": "median", "scaler": "none", "numeric_transform": "none"})
    yield Proposal(
        rationale="The columns share one scale (pixel-like): an RBF support-vector classifier on the raw "
        "values keeps the distances that standardising each column would distort.",
        changes=[SetModel(family="svc", params={"C": 10.0}), raw],
    )
    yield Proposal(
        rationale="The columns share one scale: nearest neighbours in the raw values, weighted by distance.",
        changes=[SetModel(family="knn", params={"n_neighbors": 5, "weights": "distance"}), raw],
    )


ENSEMBLE_EVERY = 5
"""Before the last step, ensemble selection waits this many experiments after its last blend."""


def _ensemble_selection(s: _Situation) -> Iterator[Proposal]:
    """Caruana's greedy selection with replacement on the saved out-of-fold predictions.

    No training is needed to choose: the best `ENSEMBLE_POOL` single pipelines' out-of-fold
    predictions are averaged greedily, and the times each was picked become its weight in a
    soft-voting ensemble, which the environment then cross-validates like any candidate.
    """
    view = s.view
    if view.oof is None or view.data is None:
        return
    recent = view.ledger[-ENSEMBLE_EVERY:]
    if not _last_step(view) and any(r["move"] == "ensemble_selection" for r in recent):
        return  # once in a while during a search: each new model would otherwise ask for a new blend
    sign = 1 if view.task["greater_is_better"] else -1
    pool = sorted(
        (
            r
            for r in view.ledger
            if r["status"] == "ok" and r["spec_hash"] and (r["spec"] or {}).get("kind") == "pipeline"
        ),
        key=lambda r: (-sign * (r["primary"] or 0.0), r["id"]),
    )[:ENSEMBLE_POOL]
    if len(pool) < 2:
        return
    oofs = {r["id"]: oof for r in pool if (oof := view.oof(r["spec_hash"] or "")) is not None}
    if s.small_data:
        yield from _average_of_best(s, [r for r in pool if r["id"] in oofs])
    selection = select_ensemble(oofs, view.data()[1].to_numpy(), problem_of(view.task))
    if selection is None:
        return
    ids = tuple(selection.weights)
    weights = tuple(float(w) for w in selection.weights.values())
    yield Proposal(
        rationale=f"Ensemble selection (Caruana et al. 2004) on the saved out-of-fold predictions of the "
        f"{len(pool)} best models: {selection.rounds} greedy picks with replacement give weights "
        f"{dict(selection.weights)} and an out-of-fold {view.task['primary_metric']} of {selection.score:.4f}.",
        changes=[BuildEnsemble(experiment_ids=ids, weights=weights)],
    )


AVERAGE_SIZE = 3
"""On small data, the average of this many best single pipelines is proposed before Caruana's blend."""


def _average_of_best(s: _Situation, ranked: list[ExperimentRecord]) -> Iterator[Proposal]:
    """The plain average of the best few pipelines, for small data.

    Caruana's greedy weights are fitted to the out-of-fold predictions, and on a few hundred rows
    they fit noise as well; equal weights have nothing to fit. docs/selection-study.md compares
    the two, and the single models, on the holdouts of bench runs. Members
    with a tuned or fixed threshold or a bag are left out (a soft vote averages probabilities at
    the default threshold), and every member's predictions are cached, so scoring it trains nothing.
    """
    plain = [r for r in ranked if (spec := r["spec"] or {}).get("threshold") == "default" and not spec.get("bagging")]
    members = plain[:AVERAGE_SIZE]
    if len(members) < 2:
        return
    yield Proposal(
        rationale=f"Average the {len(members)} best models with equal weights: on {s.view.task['n_dev_rows']} rows "
        "their CV differences are mostly noise, and an average has less variance than any one of them.",
        changes=[BuildEnsemble(experiment_ids=tuple(r["id"] for r in members))],
    )


def _ensemble(s: _Situation) -> Iterator[Proposal]:
    """Blend the best experiment of each distinct family: different errors average out."""
    view = s.view
    sign = 1 if view.task["greater_is_better"] else -1
    best_per_family: dict[str, int] = {}
    for r in sorted(
        (r for r in view.ledger if r["status"] == "ok" and (r["spec"] or {}).get("kind") == "pipeline"),
        key=lambda r: -sign * (r["primary"] or 0.0),
    ):
        best_per_family.setdefault(r["spec"]["model"]["family"], r["id"])  # type: ignore[index]
    ranked = list(best_per_family.values())
    if len(ranked) < 2:
        return
    yield Proposal(
        rationale="Soft-vote the two best models of different families.",
        changes=[BuildEnsemble(experiment_ids=tuple(ranked[:2]))],
    )
    yield Proposal(
        rationale="Soft-vote the two best models of different families, trusting the better one twice as much.",
        changes=[BuildEnsemble(experiment_ids=tuple(ranked[:2]), weights=(2.0, 1.0))],
    )
    if len(ranked) >= 3:
        yield Proposal(
            rationale="Soft-vote the three best models of different families.",
            changes=[BuildEnsemble(experiment_ids=tuple(ranked[:3]))],
        )
        yield Proposal(
            rationale="Stack the three best models of different families with a linear meta-model.",
            changes=[BuildEnsemble(experiment_ids=tuple(ranked[:3]), method="stacking")],
        )


BAG_COST_SHARE = 0.5
"""A bag is proposed only while its nested cross-validation (about K times a candidate's time)
fits in this share of the time left."""


def _bag(s: _Situation) -> Iterator[Proposal]:
    """Deliver the average of the K fold models instead of one refit (docs/decisions.md, "Bagged
    delivery"), for the incumbent line and the best tree model: averaging cuts a flexible model's
    variance, most on small data. Whether it pays is the environment's call: the bag is
    cross-validated nested (each outer fold's model is itself an average of inner-fold models),
    so it becomes the incumbent only when that evidence says so."""
    view = s.view
    folds = int(view.task["folds"])
    for base_id, spec in s.lines():
        if spec.bagging is not None or spec.threshold != "default" or FAMILIES[spec.model.family].linear:
            continue  # a linear model barely varies between folds: nothing to average away
        seconds = view.ledger[base_id]["fit_seconds"] or typical_candidate_seconds(view.ledger)
        if view.seconds_left is not None and seconds * folds > BAG_COST_SHARE * view.seconds_left:
            continue
        yield Proposal(
            rationale=f"Average {folds} fold models of experiment #{base_id} ({spec.model.family}) instead of "
            "one refit; the nested cross-validation shows whether the averaging beats the extra rows of a refit.",
            base_experiment=base_id,
            changes=[Bag(folds=folds, repeats=1)],
        )


def _regularise(s: _Situation) -> Iterator[Proposal]:
    """More regularisation with the amount left open: the Executor's policy fills it."""
    for base_id, spec in s.lines():
        if spec.model.family in REGULARISATION:
            yield Proposal(
                rationale=f"More regularisation of the {spec.model.family} model; how much is the Executor's call.",
                base_experiment=base_id,
                changes=[Regularise(direction="more")],
            )


_MOVES: dict[str, Move] = {
    "stronger_family": _stronger_family,
    "target_transform": _target_transform,
    "class_weight": _class_weight,
    "threshold": _threshold,
    "high_cardinality": _high_cardinality,
    "boosting_schedule": _boosting_schedule,
    "text_and_dates": _text_and_dates,
    "missing_indicators": _missing_indicators,
    "interactions": _interactions,
    "boosting_shape": _boosting_shape,
    "linear_recipe": _linear_recipe,
    "linear_tuning": _linear_tuning,
    "alternative_family": _alternative_family,
    "outlier_rows": _outlier_rows,
    "regularise": _regularise,
    "ensemble_selection": _ensemble_selection,
    "bag": _bag,
    "ensemble": _ensemble,
}

#: Every move's name, in the table's order (the arms a learned policy chooses among).
MOVE_NAMES: tuple[str, ...] = tuple(_MOVES)
