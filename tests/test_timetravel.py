"""History and time travel: a run's checkpoints, and new runs forked from any of them."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from crash import assert_same_run, check_reference, kill_when_paused, outcome, spawn

from tandem.api import fork_run, lineage, open_run, resume_run, run_config, run_history, run_task
from tandem.cli import main
from tandem.graph.context import RunContext
from tandem.graph.persistence import load_run_config, run_folder
from tandem.tools.data import InputError

ITERS = 3


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, penguins: Path) -> Path:
    """A delivered run, never written to by the tests below (they fork it)."""
    runs = tmp_path_factory.mktemp("runs")
    run_task(penguins, "species", run_id="orig", context=RunContext(runs_dir=str(runs), max_iters=ITERS, n_jobs=1))
    return runs


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def hashes(run_dir: Path) -> list[str | None]:
    return [json.loads(line)["spec_hash"] for line in (run_dir / "experiments.jsonl").read_text().splitlines()]


def test_history_lists_every_step_with_its_node_and_incumbent(original: Path) -> None:
    rows = run_history("orig", original)
    assert [r["step"] for r in rows] == list(range(-1, len(rows) - 1))
    nodes = [r["node"] for r in rows]
    assert nodes[:4] == ["input", "start", "setup", "scientist"]
    assert nodes[-1] == "deliver" and rows[-1]["next"] == []
    assert nodes.count("reward") == ITERS and "review" not in nodes  # no approval asked for: no gate visited
    for row, following in itertools.pairwise(rows):
        assert following["node"] in (row["next"] or ["?"])  # each checkpoint was written by the node scheduled before
    rewarded = [r for r in rows if r["node"] == "reward"]
    assert [r["experiments"] for r in rewarded] == [2, 3, 4]
    summary = json.loads((original / "orig" / "summary.json").read_text())
    # history shows the incumbent (best by CV); the delivered model may be a simpler one within noise
    ledger = [json.loads(line) for line in (original / "orig" / "experiments.jsonl").read_text().splitlines()]
    assert rows[-1]["incumbent"] == summary["incumbent"] == ledger[-1]["incumbent_after"]
    assert rows[-1]["incumbent_score"] == pytest.approx(ledger[summary["incumbent"]]["primary"])
    assert all(r["time"] for r in rows) and rows[2]["metric"] == "f1_macro"


def test_a_fork_from_any_checkpoint_goes_where_the_original_went(original: Path) -> None:
    rows = run_history("orig", original)
    for row in rows:
        if row["node"] in ("input", "start") or not row["next"]:
            with pytest.raises(InputError):
                fork_run("orig", row["step"], new_run_id=f"f{row['step']}", runs_dir=original, run=False)
            continue
        fork_run("orig", row["step"], new_run_id=f"f{row['step']}", runs_dir=original, run=False)
        folder = run_folder(original, f"f{row['step']}")
        _, context = load_run_config(folder)
        with open_run(folder) as graph:
            head = graph.get_state(run_config(folder.run_id, context))
        assert list(head.next) == row["next"], row
        assert head.values["run_id"] == folder.run_id  # and no path: the folder is found where it is
        assert not {"run_dir", "split_path"} & set(head.values)
        assert len(head.values["ledger"]) == row["experiments"]


def test_fork_continues_in_a_new_run_with_more_iterations_and_leaves_the_original_alone(
    original: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(original / "orig")
    history = run_history("orig", original)
    first_reward = next(r for r in history if r["node"] == "reward")
    code = main(
        [
            "fork",
            "orig",
            "--from",
            str(first_reward["step"]),
            "--max-iters",
            str(ITERS + 2),
            "--runs-dir",
            str(original),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "[continue] 1 experiments done" in out and "Delivered experiment" in out
    new = original / f"orig-fork{first_reward['step']}"
    summary = json.loads((new / "summary.json").read_text())
    assert summary["iterations"] == ITERS + 2 or "Scientist delivered" in summary["stop_reason"]
    forked, source = hashes(new), hashes(original / "orig")
    assert forked[:2] == source[:2]  # the shared past is the same; the future has more room
    assert len(forked) > len(source)
    assert json.loads((new / "run.json").read_text())["forked_from"]["run_id"] == "orig"
    assert json.loads((new / "run.json").read_text())["context"]["max_iters"] == ITERS + 2
    assert digest(original / "orig") == before  # not a byte of the original changed
    assert run_history("orig", original) == history
    rows = run_history(new.name, original)
    assert rows[0]["node"] == f"fork of orig@{first_reward['step']}" and rows[-1]["node"] == "deliver"


def test_fork_mid_experiment_reuses_the_cache_and_finishes_like_the_original(original: Path) -> None:
    history = run_history("orig", original)
    evaluator = [r for r in history if r["next"] == ["evaluator"]][1]
    cache = run_folder(original, "orig").cache
    summary = fork_run("orig", evaluator["checkpoint_id"][:30], new_run_id="mid", runs_dir=original)
    assert summary["status"] == "delivered"
    assert hashes(original / "mid") == hashes(original / "orig")  # same seed, same point: same ledger
    copied = sorted((original / "mid" / "cache").glob("*.json"))
    # every candidate's fold scores came from the copied cache: the same files, none trained anew
    assert copied and [p.name for p in copied] == sorted(p.name for p in cache.glob("*.json"))
    for path in copied:
        assert (
            path.stat().st_ino == (cache / path.name).stat().st_ino
            or path.read_bytes() == (cache / path.name).read_bytes()
        )


def test_fork_refuses_unknown_checkpoints_and_existing_runs(original: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="not a checkpoint"):
        fork_run("orig", 999, runs_dir=original)
    assert main(["fork", "orig", "--from", "4", "--run-id", "orig", "--runs-dir", str(original)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["history", "nope", "--runs-dir", str(original)]) == 2


def test_history_command_prints_the_checkpoints(original: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "orig", "--runs-dir", str(original)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["step", "node", "next"]
    rows = run_history("orig", original)
    assert len(out) == len(rows) + 2
    assert out[3].split()[:3] == ["1", "setup", "scientist"] and rows[2]["checkpoint_id"] in out[3]
    assert main(["history", "orig", "--runs-dir", str(original), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(rows))


def test_lineage_ignores_the_branch_a_reopened_run_left_behind(penguins: Path, tmp_path: Path) -> None:
    run_task(penguins, "species", run_id="r", context=RunContext(runs_dir=str(tmp_path), max_iters=1, n_jobs=1))
    resume_run("r", runs_dir=tmp_path, max_iters=2, force=True)  # delivered: continuing replaces its model
    folder = run_folder(tmp_path, "r")
    _, context = load_run_config(folder)
    with open_run(folder) as graph:
        config = run_config("r", context)
        everything = list(graph.get_state_history(config))
        chain = lineage(graph, config)
    assert len(everything) > len(chain)  # the first delivery is still stored, off the path
    steps = [s.metadata["step"] for s in chain]
    assert steps == sorted(set(steps))
    assert "reopened: budget raised" in [r["node"] for r in run_history("r", tmp_path)]


def test_a_half_made_fork_is_made_again_and_other_folders_are_left_alone(original: Path) -> None:
    step = next(r["step"] for r in run_history("orig", original) if r["node"] == "reward")
    half = original / "half"
    half.mkdir()
    (half / "fork.partial").touch()  # what a fork killed before writing run.json leaves
    fork_run("orig", step, new_run_id="half", runs_dir=original, run=False)
    assert json.loads((half / "run.json").read_text())["forked_from"]["step"] == step
    assert not (half / "fork.partial").exists()
    other = original / "not-a-fork"
    other.mkdir()
    (other / "summary.json").write_text("{}")
    with pytest.raises(InputError, match="already exists"):
        fork_run("orig", step, new_run_id="not-a-fork", runs_dir=original, run=False)
    assert (other / "summary.json").read_text() == "{}"


@pytest.fixture(scope="module")
def fork_reference(original: Path) -> tuple[int, dict[str, Any]]:
    """The first reward step of the original, and an uninterrupted fork from it with more room."""
    step = next(r["step"] for r in run_history("orig", original) if r["node"] == "reward")
    fork_run("orig", step, new_run_id="ref", runs_dir=original, max_iters=ITERS + 2)
    reference = outcome(original / "ref")
    check_reference(reference, ITERS + 3)
    return step, reference


# Kill points in the fork (experiments already in the original come from the copied cache).
FORK_KILL_POINTS = {
    "fold_fit@3": "inside the cross-validation of the first experiment the fork trains itself",
    "checkpoint_write@25": "inside a checkpoint commit, half-way through the fork",
    "delivery": "inside delivery, the model written and the summary not",
}


@pytest.mark.parametrize("point", list(FORK_KILL_POINTS))
def test_a_fork_killed_anywhere_resumes_to_the_uninterrupted_fork(
    point: str, original: Path, fork_reference: tuple[int, dict[str, Any]], tmp_path: Path
) -> None:
    step, reference = fork_reference
    run_id = f"killed-{point.replace('@', '-')}"
    argv = ["fork", "orig", "--from", str(step), "--run-id", run_id, "--max-iters", str(ITERS + 2)]
    log, marker = tmp_path / "fork.log", tmp_path / "paused.json"
    process = spawn([*argv, "--runs-dir", str(original)], log, pause=point, marker=marker)
    kill_when_paused(process, marker, log, point)
    killed = original / run_id
    assert not (killed / "summary.json").exists()
    if point == "delivery":
        assert (killed / "model.joblib").exists()
    if point.startswith("fold_fit"):  # the fork was training an experiment of its own, not one from the cache
        training = len((killed / "experiments.jsonl").read_text().splitlines())
        assert training >= 2 and not (killed / "cache" / f"{reference['ledger'][training]['spec_hash']}.json").exists()
    summary = resume_run(run_id, runs_dir=original)
    assert summary["status"] == "delivered" and summary["iterations"] == ITERS + 2
    assert_same_run(killed, reference)
    assert json.loads((killed / "run.json").read_text())["forked_from"]["run_id"] == "orig"
