"""tandem.envs: the PettingZoo AEC env passes api_test, the Gymnasium env passes check_env, both on the run's graph."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gymnasium
import pytest
from conftest import synthetic_frame
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import api_test

import tandem.envs
from tandem.graph.context import RewardConfig
from tandem.tools.errors import InputError


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("envdata") / "small.csv"
    synthetic_frame(n=90, seed=1).to_csv(path, index=False)
    return path


def test_aec_env_passes_pettingzoo_api_test(csv: Path):
    api_test(tandem.envs.env(csv_path=csv, target="label", max_iters=2, folds=3), num_cycles=10)


def test_aec_env_plays_a_step_with_the_reward_nodes_rewards_and_penalises_invalid_actions(csv: Path):
    env = tandem.envs.raw_env(csv_path=csv, target="label", max_iters=2, folds=3)
    env.reset(seed=0)
    observation = env.observe("scientist")
    assert "experiment" in observation["text"].lower() and observation["features"].shape == (20,)
    proposal = {"rationale": "boosting", "changes": [{"change": "set_model", "family": "lightgbm"}]}
    env.step(json.dumps(proposal))
    assert env.agent_selection == "executor"
    assert "PROPOSAL" in env.observe("executor")["text"]
    env.step("this is not a spec")  # an invalid action: no spec (unfaithful) that does not run
    rules = RewardConfig()
    assert env.rewards["executor"] == pytest.approx(-(rules.mismatch_penalty + rules.failure_penalty))
    ledger = env.session.values["ledger"]
    assert ledger[-1]["status"] != "ok" and ledger[-1]["rewards"]["executor"] == env.rewards["executor"]
    env.step("{not json")  # an invalid proposal: the Scientist pays the invalid-proposal penalty
    env.step("{}")
    assert env.rewards["scientist"] == pytest.approx(-rules.failure_penalty)
    assert all(env.truncations.values()) and not any(env.terminations.values())  # the budget ran out


def test_aec_env_terminates_when_the_scientist_delivers(csv: Path):
    env = tandem.envs.raw_env(csv_path=csv, target="label", max_iters=5, folds=3)
    env.reset(seed=0)
    env.step(json.dumps({"action": "deliver", "rationale": "good enough"}))
    assert all(env.terminations.values()) and env.session.values["status"] == "delivered"


def test_gymnasium_scientist_env_is_registered_and_passes_check_env(csv: Path):
    env = gymnasium.make("tandem/Scientist-v0", csv_path=str(csv), target="label", max_iters=2, folds=3)
    check_env(env.unwrapped)
    observation, info = env.reset(seed=0)
    assert env.observation_space.contains(observation) and info["moves"][0] == "stronger_family"
    _, reward, terminated, _truncated, step_info = env.step(0)
    assert step_info["move"] == "stronger_family" and isinstance(reward, float)
    assert not terminated


def test_aec_env_turns_any_action_in_its_space_into_a_step_and_owns_its_folders(csv: Path):
    """Actions the Text space holds but no parser expected (JSON nested past Python's recursion
    limit, an experiment id below 0) are failed steps, not crashes; each reset forgets the last
    episode (its checkpoints and run folder) and close() removes what the env made."""
    env = tandem.envs.raw_env(csv_path=csv, target="label", max_iters=3, folds=3)
    env.reset(seed=0)
    first = Path(env.session.workdir) / str(env.session.run_id)
    assert first.is_dir()
    env.step(json.dumps({"rationale": "r", "base_experiment": -2}))  # no experiment -2: an invalid proposal
    assert env.observation_space("executor").contains(env.observe("executor"))
    assert env.session.values["proposal"]["failure"] is not None
    env.step("[" * 5000)
    assert "not a spec" in env.session.values["implementation"]["error"]
    assert env.session.values["ledger"][-1]["status"] != "ok"
    env.step("{" * 5000)
    assert env.agent_selection == "executor"
    env.reset(seed=1)
    assert not first.exists() and list(env.session.saver.storage) == [env.session.run_id]
    workdir = Path(env.session.workdir)
    env.close()
    assert not workdir.exists()
    with pytest.raises(ValueError, match="approve"):
        tandem.envs.raw_env(csv_path=csv, target="label", approve="delivery")  # a gate no agent could pass
    with pytest.raises(ValueError, match="render_mode"):
        tandem.envs.raw_env(csv_path=csv, target="label", render_mode="human")


def test_an_env_makes_a_temporary_folder_only_for_episodes_it_owns(
    csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Given a runs_dir, the env keeps its episodes there and makes nothing else; refused options
    leave nothing behind either (a training loop builds many envs)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    env = tandem.envs.raw_env(csv_path=csv, target="label", max_iters=2, folds=3, runs_dir=str(tmp_path / "runs"))
    env.reset(seed=0)
    episode = tmp_path / "runs" / str(env.session.run_id)
    assert episode.is_dir()
    env.close()
    assert episode.is_dir()  # the caller's folder keeps its episodes
    with pytest.raises(InputError, match="max_iters"):
        tandem.envs.raw_env(csv_path=csv, target="label", max_iters=0)
    assert list((tmp_path / "tmp").glob("tandem-env-*")) == []  # (the process's mapped data stay until it exits)


def test_gymnasium_scientist_env_refuses_actions_outside_its_space_and_steps_after_the_end(csv: Path):
    env = tandem.envs.ScientistEnv(csv_path=str(csv), target="label", max_iters=1, folds=3)
    env.reset(seed=0)
    with pytest.raises(gymnasium.error.InvalidAction):
        env.step(-1)  # not the last move, as an index would take it
    _, _, terminated, truncated, _ = env.step(1)
    assert truncated and not terminated
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(0)  # would run past the budget and deliver again
    env.reset(seed=0)
    env.step(0)
    env.close()
