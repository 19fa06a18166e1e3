"""The verifier's fidelity verdicts and the reward rules (README.md, "Rewards")."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tandem.graph.context import RewardConfig
from tandem.graph.messages import (
    AddFeature,
    BuildEnsemble,
    Implementation,
    Proposal,
    SetClassWeight,
    SetModel,
    SetParams,
    SetPreprocessing,
    SetRowFilter,
    UseColumns,
    apply_changes,
)
from tandem.graph.reward_rules import Comparison, compare, executor_reward, judge, scientist_reward, token_count
from tandem.nodes.verifier import aspects, verify
from tandem.tools.spec import LogOp, PipelineSpec, RowFilter, parse_spec

COLUMNS = ["age", "fare", "sex", "embarked", "cabin"]
CONFIG = RewardConfig()


def logistic_base() -> PipelineSpec:
    spec = parse_spec(
        {
            "columns": {"numeric": ["age", "fare"], "categorical": ["sex"]},
            "model": {"family": "logistic", "params": {"C": 1.0}},
        }
    )
    assert isinstance(spec, PipelineSpec)
    return spec


def lightgbm_base() -> PipelineSpec:
    spec = parse_spec(
        {
            "columns": {"numeric": ["age", "fare"], "categorical": ["sex"]},
            "model": {"family": "lightgbm", "params": {"n_estimators": 200, "learning_rate": 0.1}},
            "preprocessing": {"numeric_imputer": "none"},
        }
    )
    assert isinstance(spec, PipelineSpec)
    return spec


def ledger_resolver(*specs):
    def resolve(experiment_id: int):
        return specs[experiment_id]

    return resolve


def check(base, proposal, spec, *, fitted=None, repaired=(), resolve=None):
    implementation = Implementation(spec=spec, repaired_aspects=list(repaired))
    return verify(
        base,
        proposal,
        implementation,
        fitted,
        resolve or ledger_resolver(base),
        columns=COLUMNS,
        task_type="binary",
    )


def requested(base, proposal, resolve=None):
    return apply_changes(base, proposal.changes, resolve or ledger_resolver(base))


# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------


def test_aspects_flatten_every_decision():
    flat = aspects(lightgbm_base())
    assert flat["model.family"] == "lightgbm"
    assert flat["param.n_estimators"] == 200
    assert flat["column.age"] == "numeric"
    assert flat["column.sex"] == "categorical"
    assert flat["preprocessing.numeric_imputer"] == "none"
    assert flat["threshold"] == "default"


def test_faithful_implementation_has_full_fidelity():
    base = logistic_base()
    proposal = Proposal(
        rationale="boost",
        changes=[
            SetModel(family="lightgbm", params={"n_estimators": 300, "learning_rate": 0.05}),
            SetPreprocessing(settings={"numeric_imputer": "none"}),
        ],
    )
    spec = requested(base, proposal)
    fitted = {"family": "lightgbm", "n_estimators": 300, "learning_rate": 0.05}
    verdict = check(base, proposal, spec, fitted=fitted)
    assert verdict["fidelity"] == 1.0
    assert verdict["issues"] == []
    assert verdict["proposal_valid"] is True
    # family, imputer, C removed, two new params
    assert verdict["requested"] == 5


def test_faithful_implementation_given_as_plain_data():
    base = logistic_base()
    proposal = Proposal(rationale="weights", changes=[SetClassWeight(class_weight="balanced")])
    spec = requested(base, proposal).model_dump(mode="json")
    verdict = verify(
        base,
        proposal,
        Implementation.model_validate({"spec": spec}),
        None,
        ledger_resolver(base),
        columns=COLUMNS,
        task_type="binary",
    )
    assert verdict["fidelity"] == 1.0
    assert verdict["issues"] == []


def test_changed_requested_param_lowers_fidelity_and_names_it():
    base = lightgbm_base()
    proposal = Proposal(
        rationale="more trees", changes=[SetParams(params={"n_estimators": 500, "learning_rate": 0.05})]
    )
    spec = requested(base, proposal)
    tampered = spec.model_copy(
        update={"model": spec.model.model_copy(update={"params": {"n_estimators": 400, "learning_rate": 0.05}})}
    )
    verdict = check(base, proposal, tampered)
    assert verdict["fidelity"] == pytest.approx(0.5)
    assert any("param.n_estimators" in issue and "500" in issue and "400" in issue for issue in verdict["issues"])
    assert not any("learning_rate" in issue for issue in verdict["issues"])


def test_unrequested_family_change_lowers_fidelity():
    base = logistic_base()
    proposal = Proposal(rationale="weights", changes=[SetClassWeight(class_weight="balanced")])
    spec = requested(base, proposal)
    swapped = parse_spec({**spec.model_dump(mode="json"), "model": {"family": "random_forest"}})
    verdict = check(base, proposal, swapped)
    assert verdict["fidelity"] < 1.0
    assert any("unrequested change model.family" in issue for issue in verdict["issues"])
    assert any("unrequested change param.C" in issue for issue in verdict["issues"])


def test_unrequested_extra_feature_lowers_fidelity():
    base = logistic_base()
    proposal = Proposal(rationale="regularise", changes=[SetParams(params={"C": 0.1})])
    spec = requested(base, proposal)
    extra = AddFeature(feature=LogOp(columns=("fare",))).apply(spec, ledger_resolver(base))
    verdict = check(base, proposal, extra)
    assert verdict["fidelity"] == pytest.approx(0.5)  # one asked aspect done, one unasked change
    assert any(issue.startswith("unrequested change feature.") for issue in verdict["issues"])


def test_missing_requested_change_gives_zero_fidelity():
    base = logistic_base()
    proposal = Proposal(rationale="add cabin", changes=[UseColumns(columns=("embarked",), role="categorical")])
    verdict = check(base, proposal, base)  # did nothing
    assert verdict["fidelity"] == 0.0
    assert any("column.embarked" in issue for issue in verdict["issues"])


def test_declared_preprocessing_repair_is_excused():
    base = lightgbm_base()  # numeric_imputer none: fine for lightgbm, not for logistic
    proposal = Proposal(rationale="linear", changes=[SetModel(family="logistic", params={"C": 0.5})])
    spec = requested(base, proposal)
    repaired = SetPreprocessing(settings={"numeric_imputer": "median"}).apply(spec, ledger_resolver(base))
    excused = check(base, proposal, repaired, repaired=["preprocessing.numeric_imputer"])
    assert excused["fidelity"] == 1.0
    assert excused["issues"] == []
    undeclared = check(base, proposal, repaired)
    assert undeclared["fidelity"] < 1.0
    assert any("preprocessing.numeric_imputer" in issue for issue in undeclared["issues"])


def test_declared_repair_of_the_model_family_is_not_excused():
    base = logistic_base()
    proposal = Proposal(rationale="weights", changes=[SetClassWeight(class_weight="balanced")])
    spec = requested(base, proposal)
    swapped = parse_spec({**spec.model_dump(mode="json"), "model": {"family": "random_forest", "params": {}}})
    verdict = check(base, proposal, swapped, repaired=["model.family", "param.C"])
    assert verdict["fidelity"] < 1.0
    assert any("model.family" in issue for issue in verdict["issues"])


def test_fitted_params_that_differ_from_the_spec_lower_fidelity():
    base = lightgbm_base()
    proposal = Proposal(rationale="slower", changes=[SetParams(params={"learning_rate": 0.03})])
    spec = requested(base, proposal)
    honest = {"family": "lightgbm", "n_estimators": 200, "learning_rate": 0.03}
    assert check(base, proposal, spec, fitted=honest)["fidelity"] == 1.0
    # float noise from a round trip through JSON is not a mismatch
    assert check(base, proposal, spec, fitted={**honest, "learning_rate": 0.03 * (1 + 1e-12)})["fidelity"] == 1.0
    lying = {**honest, "n_estimators": 100}
    verdict = check(base, proposal, spec, fitted=lying)
    assert verdict["fidelity"] == pytest.approx(0.5)
    assert any("fitted estimator holds n_estimators=100" in issue for issue in verdict["issues"])


def test_invalid_proposal_is_flagged_and_not_the_executors_fault():
    base = logistic_base()
    proposal = Proposal(rationale="use it", changes=[UseColumns(columns=("tikcet",), role="categorical")])
    verdict = check(base, proposal, base)
    assert verdict["proposal_valid"] is False
    assert verdict["fidelity"] == 1.0
    assert "invalid proposal" in verdict["issues"][0]
    assert "tikcet" in verdict["issues"][0]


def test_proposal_with_wrong_family_for_task_is_invalid():
    base = logistic_base()
    proposal = Proposal(rationale="ridge", changes=[SetModel(family="ridge")])
    assert check(base, proposal, base)["proposal_valid"] is False


def test_missing_implementation_has_zero_fidelity():
    base = logistic_base()
    proposal = Proposal(rationale="weights", changes=[SetClassWeight(class_weight="balanced")])
    verdict = verify(
        base,
        proposal,
        Implementation(error="could not build it"),
        None,
        ledger_resolver(base),
        columns=COLUMNS,
        task_type="binary",
    )
    assert verdict["fidelity"] == 0.0
    assert verdict["proposal_valid"] is True
    assert verdict["issues"] == ["could not build it"]


def test_ensemble_proposal_verified_by_members():
    first, second = logistic_base(), lightgbm_base()
    resolve = ledger_resolver(first, second)
    proposal = Proposal(rationale="blend", changes=[BuildEnsemble(experiment_ids=(0, 1))])
    spec = requested(first, proposal, resolve)
    assert check(first, proposal, spec, resolve=resolve)["fidelity"] == 1.0
    wrong = parse_spec({"members": [first.model_dump(), first.model_dump()]})
    assert check(first, proposal, wrong, resolve=resolve)["fidelity"] < 1.0


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


def test_uniform_fold_gain_is_significant():
    incumbent = [0.70, 0.72, 0.68, 0.71, 0.69]
    candidate = [v + 0.02 for v in incumbent]
    result = compare("f1_macro", candidate, incumbent, CONFIG)
    assert result.gain == pytest.approx(0.02)
    assert result.t_stat == math.inf
    assert result.significant


def test_noise_around_zero_is_not_significant():
    incumbent = [0.70, 0.72, 0.68, 0.71, 0.69]
    noise = [0.01, -0.012, 0.008, -0.009, 0.004]
    result = compare("f1_macro", [i + d for i, d in zip(incumbent, noise, strict=True)], incumbent, CONFIG)
    assert abs(result.t_stat) < CONFIG.significance_t
    assert not result.significant


def test_t_statistic_is_the_paired_t():
    rng = np.random.default_rng(0)
    incumbent = list(0.7 + rng.normal(0, 0.02, 5))
    diffs = np.array([0.03, 0.01, 0.02, 0.015, 0.025])
    result = compare("accuracy", list(incumbent + diffs), incumbent, CONFIG)
    expected_t = diffs.mean() / (diffs.std(ddof=1) / math.sqrt(5))
    assert result.gain == pytest.approx(diffs.mean())
    assert result.t_stat == pytest.approx(expected_t)
    assert result.significant


def test_positive_but_noisy_gain_below_threshold_is_not_significant():
    incumbent = [0.70] * 5
    diffs = [0.05, -0.04, 0.03, -0.02, 0.01]  # mean > 0, t ≈ 0.37
    result = compare("accuracy", [0.70 + d for d in diffs], incumbent, CONFIG)
    assert result.gain > 0
    assert 0 < result.t_stat < CONFIG.significance_t
    assert not result.significant


def test_repeated_folds_use_the_corrected_t_statistic():
    rng = np.random.default_rng(1)
    incumbent = list(0.7 + rng.normal(0, 0.02, 15))
    diffs = np.array([0.03, 0.01, 0.02, 0.015, 0.025] * 3) + rng.normal(0, 0.005, 15)
    candidate = list(np.array(incumbent) + diffs)
    repeated = compare("accuracy", candidate, incumbent, CONFIG, folds_per_repeat=5)
    # Nadeau and Bengio: the variance grows by (1/(R K) + 1/(K-1)) instead of 1/(R K)
    expected = diffs.mean() / math.sqrt(diffs.var(ddof=1) * (1 / 15 + 1 / 4))
    assert repeated.t_stat == pytest.approx(expected)
    naive = compare("accuracy", candidate, incumbent, CONFIG)  # as if 15 independent folds
    assert naive.t_stat == pytest.approx(diffs.mean() / (diffs.std(ddof=1) / math.sqrt(15)))
    assert repeated.t_stat < naive.t_stat / 2
    # one repeat (K scores for K folds) keeps the plain paired t
    one = compare("accuracy", candidate[:5], incumbent[:5], CONFIG, folds_per_repeat=5)
    assert one.t_stat == pytest.approx(compare("accuracy", candidate[:5], incumbent[:5], CONFIG).t_stat)


def _scores(primary: list[float], log_loss: list[float], metric: str = "f1_macro") -> dict[str, list[float]]:
    return {metric: primary, "log_loss": log_loss}


def test_a_tie_on_a_discrete_metric_goes_to_the_lower_log_loss():
    f1 = [0.80, 0.76, 0.81, 0.78, 0.79]
    incumbent = _scores(f1, [0.50, 0.52, 0.49, 0.51, 0.50])
    sharper = _scores(f1, [0.45, 0.47, 0.46, 0.44, 0.46])
    result = judge("f1_macro", sharper, incumbent, CONFIG)
    assert result.gain == 0.0 and not result.significant
    assert result.better and result.tie_break is not None and result.tie_break > 0
    assert not judge("f1_macro", incumbent, sharper, CONFIG).better  # the other way round
    # a near-tie (within one standard error) is a tie too: a slightly higher F1 with worse log-loss loses
    noisy = _scores([0.81, 0.75, 0.82, 0.77, 0.80], [0.55, 0.56, 0.54, 0.57, 0.55])
    near = judge("f1_macro", noisy, incumbent, CONFIG)
    assert near.gain > 0 and abs(near.t_stat) < 1.0
    assert not near.better
    assert compare("f1_macro", noisy["f1_macro"], f1, CONFIG).better  # what the primary alone says
    # the same probabilities cut elsewhere (a tuned threshold): log-loss is identical, the primary decides
    recut = _scores([0.81, 0.75, 0.82, 0.77, 0.80], incumbent["log_loss"])
    same = judge("f1_macro", recut, incumbent, CONFIG)
    assert same.better and same.tie_break is None and abs(same.t_stat) < 1.0


def test_a_candidate_that_loses_the_tie_break_pays_the_executor_nothing_however_often_it_returns():
    """F1 slightly up, log-loss worse: the old incumbent proposed again after losing its place to
    a sharper model is not the new incumbent, so its positive F1 "gain" is no gain (DESIGN.md:
    a worse-then-better oscillation earns nothing)."""
    old = _scores([0.80, 0.82, 0.78, 0.80, 0.80], [0.40] * 5)
    sharper = _scores([0.79, 0.80, 0.79, 0.81, 0.79], [0.35] * 5)
    assert judge("f1_macro", sharper, old, CONFIG).better  # it takes the incumbent's place
    again = judge("f1_macro", old, sharper, CONFIG)
    assert again.gain > 0 and not again.better
    event = executor_reward(3, fidelity=1.0, comparison=again, failed=False, tokens=0, config=CONFIG)
    assert event["parts"]["gain"] == 0.0


def test_a_gain_that_is_not_a_number_pays_nothing():
    """A model whose predictions overflow scores NaN on a fold and still runs: no NaN reward."""
    nan = compare("rmse", [1.0, float("nan"), 1.0], [2.0, 2.0, 2.0], CONFIG)
    assert math.isnan(nan.gain)
    for reward in (executor_reward, scientist_reward):
        event = reward(3, fidelity=1.0, comparison=nan, failed=False, tokens=0, config=CONFIG)
        assert all(math.isfinite(v) for v in event["parts"].values()) and math.isfinite(event["total"])


def test_a_clear_gain_or_a_continuous_metric_ignores_the_log_loss():
    incumbent = _scores([0.70, 0.72, 0.68, 0.71, 0.69], [0.50] * 5)
    clear = _scores([0.75, 0.77, 0.73, 0.76, 0.74], [0.60] * 5)  # better F1 on every fold, worse log-loss
    result = judge("f1_macro", clear, incumbent, CONFIG)
    assert result.better and result.significant and result.tie_break is None
    auc_inc = _scores([0.80, 0.76, 0.81, 0.78, 0.79], [0.5] * 5, metric="roc_auc")
    auc_cand = _scores([0.80, 0.76, 0.81, 0.78, 0.79], [0.4] * 5, metric="roc_auc")
    assert not judge("roc_auc", auc_cand, auc_inc, CONFIG).better  # no tie-break on a continuous metric
    # without log-loss scores (a model without probabilities) the primary decides
    assert not judge("f1_macro", {"f1_macro": incumbent["f1_macro"]}, incumbent, CONFIG).better


def test_identical_folds_are_not_significant():
    folds = [0.7, 0.71, 0.69]
    result = compare("f1_macro", folds, folds, CONFIG)
    assert result.gain == 0.0
    assert result.t_stat == 0.0
    assert not result.significant


def test_rmse_direction_and_relative_scale():
    incumbent = [2.0, 2.2, 1.8, 2.1, 1.9]  # mean 2.0
    better = [v - 0.2 for v in incumbent]
    result = compare("rmse", better, incumbent, CONFIG)
    assert result.gain == pytest.approx(0.1)  # 0.2 lower RMSE is 10 % of the incumbent's 2.0
    assert result.significant
    worse = compare("rmse", [v + 0.2 for v in incumbent], incumbent, CONFIG)
    assert worse.gain == pytest.approx(-0.1)
    assert worse.t_stat == -math.inf
    assert not worse.significant


def test_r2_higher_is_better():
    incumbent = [0.5, 0.6, 0.55]
    assert compare("r2", [v + 0.05 for v in incumbent], incumbent, CONFIG).significant
    assert not compare("r2", [v - 0.05 for v in incumbent], incumbent, CONFIG).significant


def test_min_gain_is_required():
    incumbent = [0.70, 0.72, 0.68]
    candidate = [v + 0.001 for v in incumbent]
    strict = RewardConfig(min_gain=0.005)
    assert compare("accuracy", candidate, incumbent, CONFIG).significant
    assert not compare("accuracy", candidate, incumbent, strict).significant


def test_nan_scores_are_never_significant():
    result = compare("accuracy", [float("nan"), 0.8, 0.8], [0.7, 0.7, 0.7], CONFIG)
    assert math.isnan(result.gain)
    assert not result.significant


def test_mismatched_fold_counts_raise():
    with pytest.raises(ValueError):
        compare("accuracy", [0.8, 0.8], [0.7, 0.7, 0.7], CONFIG)


# --------------------------------------------------------------------------------------------
# rewards
# --------------------------------------------------------------------------------------------

SIGNIFICANT = Comparison(gain=0.03, t_stat=4.0, significant=True, better=True)
INSIGNIFICANT = Comparison(gain=0.004, t_stat=0.5, significant=False, better=True)
WORSE = Comparison(gain=-0.02, t_stat=-3.0, significant=False)


def parts_sum(event):
    return sum(event["parts"].values())


def test_scientist_paid_the_gain_when_faithful_and_significant():
    event = scientist_reward(3, fidelity=1.0, comparison=SIGNIFICANT, failed=False, tokens=0, config=CONFIG)
    assert event["agent"] == "scientist"
    assert event["experiment_id"] == 3
    assert event["parts"]["gain"] == pytest.approx(0.03)
    assert event["parts"]["insignificant"] == 0.0
    assert event["total"] == pytest.approx(0.03)


def test_scientist_penalised_when_faithful_but_not_significant():
    for comparison in (INSIGNIFICANT, WORSE):
        event = scientist_reward(1, fidelity=0.9, comparison=comparison, failed=False, tokens=0, config=CONFIG)
        assert event["parts"]["gain"] == 0.0
        assert event["parts"]["insignificant"] == pytest.approx(-CONFIG.insignificant_penalty)
        assert event["total"] == pytest.approx(-CONFIG.insignificant_penalty)


def test_scientist_not_blamed_or_paid_when_unfaithful():
    for comparison in (SIGNIFICANT, INSIGNIFICANT, WORSE):
        event = scientist_reward(
            1, fidelity=CONFIG.low_fidelity - 0.01, comparison=comparison, failed=False, tokens=0, config=CONFIG
        )
        assert event["total"] == 0.0
        assert all(v == 0.0 for v in event["parts"].values())


def test_scientist_not_blamed_when_the_candidate_failed():
    event = scientist_reward(1, fidelity=1.0, comparison=None, failed=True, tokens=0, config=CONFIG)
    assert event["total"] == 0.0


def test_scientist_pays_for_an_invalid_proposal_and_tokens():
    event = scientist_reward(
        1, fidelity=1.0, comparison=None, failed=True, tokens=1000, config=CONFIG, proposal_valid=False
    )
    assert event["parts"]["invalid"] == pytest.approx(-CONFIG.failure_penalty)
    assert event["parts"]["tokens"] == pytest.approx(-CONFIG.token_cost * 1000)
    assert event["total"] == pytest.approx(parts_sum(event))


def test_scientist_token_penalty_is_a_separate_part():
    event = scientist_reward(1, fidelity=1.0, comparison=SIGNIFICANT, failed=False, tokens=5000, config=CONFIG)
    assert event["parts"]["gain"] == pytest.approx(0.03)
    assert event["parts"]["tokens"] == pytest.approx(-0.005)
    assert event["total"] == pytest.approx(0.025)


def test_executor_paid_fidelity_times_positive_gain():
    event = executor_reward(2, fidelity=0.9, comparison=SIGNIFICANT, failed=False, tokens=0, config=CONFIG)
    assert event["agent"] == "executor"
    assert event["parts"]["gain"] == pytest.approx(0.9 * 0.03)
    assert event["parts"]["mismatch"] == 0.0
    assert event["parts"]["failure"] == 0.0
    assert event["total"] == pytest.approx(0.027)
    # significance does not matter for the Executor; a loss is not charged to it
    assert executor_reward(2, fidelity=1.0, comparison=INSIGNIFICANT, failed=False, tokens=0, config=CONFIG)[
        "total"
    ] == pytest.approx(0.004)
    assert executor_reward(2, fidelity=1.0, comparison=WORSE, failed=False, tokens=0, config=CONFIG)["total"] == 0.0


def test_executor_mismatch_penalty_when_unfaithful():
    event = executor_reward(2, fidelity=0.5, comparison=SIGNIFICANT, failed=False, tokens=0, config=CONFIG)
    assert event["parts"]["mismatch"] == pytest.approx(-CONFIG.mismatch_penalty)
    assert event["parts"]["gain"] == pytest.approx(0.015)
    assert event["total"] == pytest.approx(0.015 - CONFIG.mismatch_penalty)
    at_threshold = executor_reward(
        2, fidelity=CONFIG.low_fidelity, comparison=SIGNIFICANT, failed=False, tokens=0, config=CONFIG
    )
    assert at_threshold["parts"]["mismatch"] == 0.0


def test_executor_failure_penalty_when_failed():
    event = executor_reward(2, fidelity=1.0, comparison=SIGNIFICANT, failed=True, tokens=0, config=CONFIG)
    assert event["parts"]["failure"] == pytest.approx(-CONFIG.failure_penalty)
    assert event["parts"]["gain"] == 0.0
    assert event["total"] == pytest.approx(-CONFIG.failure_penalty)


def test_executor_token_penalty_in_its_own_part():
    config = RewardConfig(token_cost=2e-6)
    event = executor_reward(2, fidelity=1.0, comparison=SIGNIFICANT, failed=False, tokens=1500, config=config)
    assert event["parts"]["tokens"] == pytest.approx(-2e-6 * 1500)
    assert event["parts"]["gain"] == pytest.approx(0.03)
    assert event["total"] == pytest.approx(0.03 - 0.003)
    assert event["total"] == pytest.approx(parts_sum(event))


def test_invalid_proposal_does_not_penalise_the_executor():
    event = executor_reward(
        2, fidelity=0.0, comparison=None, failed=True, tokens=100, config=CONFIG, proposal_valid=False
    )
    assert event["parts"]["mismatch"] == 0.0
    assert event["parts"]["failure"] == 0.0
    assert event["parts"]["gain"] == 0.0
    assert event["total"] == pytest.approx(-CONFIG.token_cost * 100)


def test_token_count():
    assert token_count(None) == 0
    assert token_count({"input": 120, "output": 30}) == 150


def _pipeline(i: int, rmse: float, **spec: object) -> dict:
    """A ledger row of a single pipeline with this mean CV RMSE (its saved predictions are keyed `h{i}`)."""
    model = {"family": "ridge", "params": {"alpha": 1.0 + i}}
    full = {"kind": "pipeline", "columns": {"numeric": ["a"]}, "model": model, "threshold": "default", **spec}
    return {"id": i, "status": "ok", "spec": full, "spec_hash": f"h{i}", "primary": rmse}


def test_small_data_blend_is_caruanas_selection_over_the_best_plain_pipelines() -> None:
    """The pool is the best ENSEMBLE_POOL single pipelines with saved predictions; a tuned threshold,
    a bag, an ensemble or a failed experiment is not a member, however well it scores."""
    from tandem.graph.reward_rules import small_data_blend
    from tandem.tools.ensemble_selection import ENSEMBLE_POOL, select_ensemble
    from tandem.tools.spec import spec_hash
    from tandem.tools.training import Problem

    problem = Problem("regression", ("rmse",), "rmse")
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    ledger = [_pipeline(i, rmse=1.0 + i / 100) for i in range(12)]  # #0 best, #11 worst
    oofs = {f"h{i}": (y + rng.normal(scale=0.5 + i / 20, size=300)).reshape(1, -1, 1) for i in range(12)}
    perfect = y.reshape(1, -1, 1)
    ledger += [
        {**_pipeline(12, rmse=0.0), "spec": {**_pipeline(12, 0.0)["spec"], "threshold": 0.3}},
        _pipeline(13, rmse=0.0, bagging={"folds": 5, "repeats": 1}),
        {**_pipeline(14, rmse=0.0), "spec": {"kind": "ensemble", "members": [], "method": "voting"}},
        {**_pipeline(15, rmse=0.0), "status": "failed"},
    ]
    oofs |= {f"h{i}": perfect for i in range(12, 16)}
    del oofs["h2"]  # no saved predictions: the next best takes its place in the pool
    asked: list[str] = []

    def oof(key: str) -> np.ndarray | None:
        asked.append(key)
        return oofs.get(key)

    blend = small_data_blend(ledger, oof, y, problem)  # type: ignore[arg-type]
    pool = [0, 1, 3, 4, 5, 6, 7, 8]
    assert len(pool) == ENSEMBLE_POOL and asked == [f"h{i}" for i in (0, 1, 2, *pool[2:])]
    expected = select_ensemble({i: oofs[f"h{i}"] for i in pool}, y, problem)
    assert expected is not None and len(expected.weights) >= 2  # independent errors: a blend beats any member
    assert blend is not None and blend.method == "voting"
    assert dict(zip(blend.member_ids, blend.weights, strict=True)) == expected.weights
    assert [m.model.params for m in blend.members] == [ledger[i]["spec"]["model"]["params"] for i in blend.member_ids]
    assert spec_hash(blend) == spec_hash(small_data_blend(ledger, oofs.get, y, problem))  # type: ignore[arg-type, arg-type]
    # nothing to blend: one usable pipeline, or predictions that no blend improves
    assert small_data_blend(ledger[:1], oofs.get, y, problem) is None  # type: ignore[arg-type]
    copies = {"h0": perfect, "h1": perfect + 1.0}
    assert small_data_blend(ledger[:2], copies.get, y, problem) is None  # type: ignore[arg-type]


def test_the_blend_pool_keeps_a_place_for_every_familys_best() -> None:
    """Nine ridge models outscore CatBoost and LightGBM: the pool still holds each family's best
    (CatBoost's from its second-best run when the best saved no predictions), and the ridge models
    fill what is left by score; without `per_family` it is the best by score alone."""
    from tandem.graph.reward_rules import blend_pool

    def record(i: int, family: str, rmse: float) -> dict:
        return {**_pipeline(i, rmse), "spec": {**_pipeline(i, rmse)["spec"], "model": {"family": family, "params": {}}}}

    ridges = [record(i, "ridge", 1.0 + i / 100) for i in range(9)]
    others = [record(9, "catboost", 2.0), record(10, "catboost", 2.1), record(11, "lightgbm", 3.0)]
    saved = {f"h{i}": np.full((1, 5, 1), float(i)) for i in range(12) if i != 9}
    pool = blend_pool([*others, *ridges], saved.get, greater_is_better=False)
    assert sorted(pool) == [0, 1, 2, 3, 4, 5, 10, 11]
    assert np.array_equal(pool[10], saved["h10"])
    by_score = blend_pool([*others, *ridges], saved.get, greater_is_better=False, per_family=False)
    assert sorted(by_score) == list(range(8))
    # higher is better: the order flips, and a pool larger than the candidates holds them all
    assert sorted(blend_pool(ridges[:3], saved.get, greater_is_better=True, size=2)) == [1, 2]
    assert sorted(blend_pool(ridges[:3], saved.get, greater_is_better=True, size=20)) == [0, 1, 2]


def test_a_small_data_run_delivers_the_blend_as_an_environment_row(titanic: Path, tmp_path: Path) -> None:
    """Titanic's 712 development rows are small data: the blend is cross-validated from its members'
    cached predictions and added to the ledger, unrewarded, as the environment's own row."""
    from tandem.api import run_task
    from tandem.graph.context import RunContext

    context = RunContext(runs_dir=str(tmp_path), max_iters=4, time_budget=None)
    summary = run_task(titanic, "Survived", run_id="blend", context=context)
    ledger = [json.loads(line) for line in (tmp_path / "blend" / "experiments.jsonl").read_text().splitlines()]
    events = [json.loads(line) for line in (tmp_path / "blend" / "rewards.jsonl").read_text().splitlines()]
    delivered = ledger[summary["best"]["experiment_id"]]
    assert summary["experiments"] == len(ledger) == 6 and delivered["id"] == 5  # baseline, 4 experiments, blend
    assert delivered["move"] == "delivery_blend" and delivered["spec"]["kind"] == "ensemble"
    assert delivered["rewards"] == {"scientist": 0.0, "executor": 0.0} and delivered["tokens"] == {}
    assert {e["experiment_id"] for e in events} == {1, 2, 3, 4}  # no agent is rewarded for the blend
    members = delivered["spec"]["member_ids"]
    assert len(members) >= 2 and all(ledger[i]["spec"]["kind"] == "pipeline" for i in members)
    assert len(delivered["fold_scores"]["f1_macro"]) == len(ledger[0]["fold_scores"]["f1_macro"])
    assert summary["incumbent"] != delivered["id"] and "Caruana" in summary["selection"]
    assert summary["best"]["holdout"]["f1_macro"] > 0


def _timed_record(i: int, fit_seconds: float, family: str = "ridge", **spec: Any) -> dict[str, Any]:
    """A scored ledger row with 15 fold scores (3 repeats of 5) that took `fit_seconds` to cross-validate."""
    pipeline = {"kind": "pipeline", "model": {"family": family}, "threshold": "default", "bagging": None}
    return {
        "id": i,
        "status": "ok",
        "spec_hash": f"h{i}",
        "spec": {**pipeline, **spec},
        "fold_scores": {"rmse": [1.0] * 15},
        "primary": 1.0 + i / 100,
        "fit_seconds": fit_seconds,
    }


def _timed_state(ledger: list[dict[str, Any]], spent: float, dev_rows: int = 5000, incumbent: int = 0) -> Any:
    task = {"n_dev_rows": dev_rows, "folds": 5, "greater_is_better": False}
    return {
        "ledger": ledger,
        "seconds_spent": spent,
        "iteration": len(ledger) - 1,
        "task": task,
        "incumbent": incumbent,
    }


def test_the_search_stops_when_the_time_left_is_below_a_typical_fit() -> None:
    from tandem.graph.budget import DELIVERY_OVERHEAD_SECONDS, budget_exhausted
    from tandem.graph.context import RunContext

    ledger = [_timed_record(i, s) for i, s in enumerate((0.1, 10.0, 12.0, 30.0))]
    context = RunContext(time_budget=100.0, max_iters=50, n_jobs=1)
    reserve = DELIVERY_OVERHEAD_SECONDS + 0.1 / 15 * 5 / 4  # the incumbent is the baseline: one refit
    assert budget_exhausted(_timed_state(ledger, 80.0 - reserve), context) is None
    reason = budget_exhausted(_timed_state(ledger, 90.0 - reserve), context)
    assert reason is not None and "nearly spent" in reason and "kept for delivery" in reason


def test_the_time_budget_keeps_what_refitting_the_delivered_models_should_take() -> None:
    from tandem.graph.budget import DELIVERY_OVERHEAD_SECONDS, budget_exhausted, candidate_seconds, delivery_seconds
    from tandem.graph.context import RunContext

    context = RunContext(time_budget=60.0, max_iters=50, n_jobs=3, candidate_time_limit=300.0)
    ledger = [_timed_record(0, 1.5), _timed_record(1, 30.0, "catboost"), _timed_record(2, 15.0, "random_forest")]
    ledger.append({**_timed_record(3, 0.01), "spec": {"kind": "ensemble", "member_ids": [1, 2]}})
    # 15 fits, 3 at a time: a fit took fit_seconds / 5, and a refit on 5/4 of the rows 1/4 of fit_seconds
    refits = {"baseline": 1.5 / 4, "ensemble": (30.0 + 15.0) / 4}
    assert delivery_seconds(_timed_state(ledger, 0.0, incumbent=3), context) == pytest.approx(
        DELIVERY_OVERHEAD_SECONDS + refits["baseline"] + refits["ensemble"]
    )
    assert delivery_seconds(_timed_state(ledger, 0.0, incumbent=0), context) == pytest.approx(
        DELIVERY_OVERHEAD_SECONDS + refits["baseline"]
    )
    # on small data delivery may blend every pipeline of the pool: each is kept for
    small = _timed_state(ledger, 0.0, dev_rows=300, incumbent=0)
    assert delivery_seconds(small, context) == pytest.approx(DELIVERY_OVERHEAD_SECONDS + (1.5 + 30.0 + 15.0) / 4)

    reserve = delivery_seconds(_timed_state(ledger, 0.0, incumbent=3), context)
    assert candidate_seconds(_timed_state(ledger, 20.0, incumbent=3), context) == pytest.approx(40.0 - reserve)
    reason = budget_exhausted(_timed_state(ledger, 60.0 - reserve, incumbent=3), context)
    assert reason == f"time budget reached (60 s; about {reserve:.0f} s kept for delivery)"
    cheap = candidate_seconds(_timed_state(ledger, 20.0, incumbent=0), context)  # the baseline is quick to refit
    assert cheap == pytest.approx(40.0 - DELIVERY_OVERHEAD_SECONDS - refits["baseline"])


def test_the_reserve_for_a_tuned_threshold_counts_its_refit_with_inner_tuning() -> None:
    """A tuned threshold is scored from its model's cached predictions (no training, near 0 s) but
    refit with TunedThresholdClassifierCV, 3 inner fits and a last one on every row."""
    from tandem.graph.budget import DELIVERY_OVERHEAD_SECONDS, TUNED_THRESHOLD_REFITS, delivery_seconds
    from tandem.graph.context import RunContext

    context = RunContext(time_budget=60.0, max_iters=50, n_jobs=3)
    model = _timed_record(1, 20.0, "lightgbm")
    tuned = {**_timed_record(2, 0.05, "lightgbm", threshold="tuned"), "base_experiment": 1}
    featured = {**_timed_record(3, 20.0, "lightgbm", threshold="tuned", features=["f"]), "base_experiment": 2}
    blend = {**_timed_record(4, 0.01), "spec": {"kind": "ensemble", "member_ids": [2, 3]}}
    ledger = [_timed_record(0, 1.5), model, tuned, featured, blend]
    baseline, one_refit = 1.5 / 4, 20.0 / 4  # 15 fits, 3 at a time, on 5/4 of a fold's rows

    def reserve(incumbent: int) -> float:
        return delivery_seconds(_timed_state(ledger, 0.0, incumbent=incumbent), context)

    # the threshold move's own 0.05 s say nothing of its model: #1's time is read, and tuned thrice
    assert reserve(2) == pytest.approx(DELIVERY_OVERHEAD_SECONDS + baseline + TUNED_THRESHOLD_REFITS * one_refit)
    assert reserve(3) == pytest.approx(DELIVERY_OVERHEAD_SECONDS + baseline + TUNED_THRESHOLD_REFITS * one_refit)
    # a blend refits its members at the default threshold: once each
    assert reserve(4) == pytest.approx(DELIVERY_OVERHEAD_SECONDS + baseline + 2 * one_refit)


def test_a_row_filter_is_verified_like_any_other_change():
    base = parse_spec({"columns": {"numeric": ["age", "fare"]}, "model": {"family": "ridge"}})
    asked = SetRowFilter(row_filter=RowFilter(method="target_residual", share=0.02))
    proposal = Proposal(rationale="drop outliers", changes=[asked])
    done = apply_changes(base, [asked], lambda i: base)

    def check_regression(proposal: Proposal, spec: PipelineSpec) -> dict:
        implementation = Implementation(spec=spec)
        return verify(base, proposal, implementation, None, lambda i: base, columns=COLUMNS, task_type="regression")  # type: ignore[return-value]

    assert aspects(done)["row_filter"] == {"method": "target_residual", "share": 0.02}
    ok = check_regression(proposal, done)
    assert ok["fidelity"] == 1.0 and ok["requested"] == 1
    skipped = check_regression(proposal, base)
    assert skipped["fidelity"] == 0.0 and "row_filter" in skipped["issues"][0]
    other = done.model_copy(update={"row_filter": RowFilter(method="isolation_forest", share=0.02)})
    wrong = check_regression(proposal, other)
    assert wrong["fidelity"] == 0.0
    unasked = Proposal(rationale="nothing", changes=[SetParams(params={"alpha": 2.0})])
    sneaky = apply_changes(base, unasked.changes, lambda i: base).model_copy(update={"row_filter": asked.row_filter})
    extra = check_regression(unasked, sneaky)
    assert extra["fidelity"] < 1.0 and any("unrequested change row_filter" in i for i in extra["issues"])


def test_the_budget_after_a_step_keeps_time_to_refit_the_model_that_step_made_the_incumbent() -> None:
    """100 of 120 s spent on a quick baseline; the step's 80 s model becomes the incumbent: the search
    stops now, while its refit still fits, not one step later."""
    from tandem.graph.budget import budget_exhausted
    from tandem.graph.context import RunContext
    from tandem.nodes.reward import after_step

    context = RunContext(time_budget=120.0, max_iters=50, n_jobs=1)
    before = _timed_state([_timed_record(0, 2.0)], 100.0)
    record = {**_timed_record(1, 80.0 * 15 / 5 * 4, "catboost"), "iteration": 1, "incumbent_after": 1}
    assert budget_exhausted({**before, "iteration": 1}, context) is None  # what the node used to check
    reason = budget_exhausted(after_step(before, record), context)  # type: ignore[arg-type]
    assert reason is not None and "kept for delivery" in reason


def test_delivery_s_seconds_are_spent_from_the_run_s_clock_in_the_state_and_the_summary(tmp_path: Path) -> None:
    """The time budget keeps seconds for delivery, and `--time-budget` is working seconds for the
    search and delivery: what delivery takes is counted, not left out of `seconds_spent`."""
    from conftest import synthetic_frame

    from tandem.api import lineage, open_run, run_config, run_task
    from tandem.graph.context import RunContext
    from tandem.graph.persistence import RunFolder, run_thread

    synthetic_frame(n=200, seed=3).to_csv(tmp_path / "data.csv", index=False)
    context = RunContext(runs_dir=str(tmp_path / "runs"), max_iters=1, n_jobs=1)
    summary = run_task(tmp_path / "data.csv", "label", run_id="r", folds=3, context=context)
    folder = RunFolder(tmp_path / "runs" / "r")
    with open_run(folder) as graph:
        chain = lineage(graph, run_config(run_thread(folder), context))
    searched, delivered = chain[-2].values["seconds_spent"], chain[-1].values["seconds_spent"]
    assert chain[-2].next == ("deliver",) and delivered > searched + 0.05  # a refit and a report take time
    assert summary["seconds_spent"] == pytest.approx(delivered, abs=0.01)
