"""Human in the loop: approval gates with LangGraph's interrupt(), from Python and at the terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_chat import ScriptedChatModel, answer

from tandem.api import resume_run, run_history, run_task
from tandem.cli import main
from tandem.graph.context import RunContext
from tandem.nodes.review import Verdict, parse_reply

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        (True, Verdict(True)),
        ("yes", Verdict(True)),
        ("", Verdict(True)),
        ({"approve": True}, Verdict(True)),
        (False, Verdict(False)),
        ("no", Verdict(False)),
        ({"approve": False, "reason": "too slow"}, Verdict(False, "too slow")),
        ({"reason": "not boosting"}, Verdict(False, "not boosting")),
        ("try a linear model instead", Verdict(False, "try a linear model instead")),
    ],
)
def test_replies_are_read_in_every_documented_form(reply: Any, verdict: Verdict) -> None:
    assert parse_reply(reply) == verdict


def context(runs: Path, **changes: Any) -> RunContext:
    return RunContext(runs_dir=str(runs), n_jobs=1, **changes)


def test_a_rejected_proposal_reaches_the_scientist_who_moves_on(penguins: Path, tmp_path: Path) -> None:
    asked: list[dict[str, Any]] = []

    def human(question: dict[str, Any]) -> Any:
        asked.append(question)
        if len(asked) == 1:
            return {"approve": False, "reason": "no gradient boosting on 300 rows"}
        return True

    summary = run_task(
        penguins, "species", run_id="a", context=context(tmp_path, max_iters=2, approve="proposals"), on_approval=human
    )
    assert summary["status"] == "delivered"
    kinds = [q["kind"] for q in asked]
    assert kinds == ["proposal", "proposal", "proposal", "delivery"]  # the rejected one, two experiments, delivery
    first, second = asked[0], asked[1]
    assert first["move"] == "stronger_family" and "lightgbm" in first["proposal"]
    assert second["move"] != first["move"]
    assert summary["feedback"] == [
        {
            "iteration": 0,
            "kind": "proposal",
            "proposal": first["proposal"],
            "move": "stronger_family",
            "reason": "no gradient boosting on 300 rows",
        }
    ]
    ledger = [json.loads(line) for line in (tmp_path / "a" / "experiments.jsonl").read_text().splitlines()]
    searched = [r for r in ledger if r["move"] != "delivery_blend"]  # penguins is small data: delivery adds its blend
    assert len(searched) == 3  # a rejected proposal is not an experiment and costs no iteration
    assert all(r["move"] != "stronger_family" for r in ledger)
    assert "no gradient boosting on 300 rows" in (tmp_path / "a" / "report.html").read_text()


def test_without_a_handler_the_run_pauses_and_resumes_with_an_answer(penguins: Path, tmp_path: Path) -> None:
    paused = run_task(penguins, "species", run_id="p", context=context(tmp_path, max_iters=1, approve="delivery"))
    assert paused["status"] == "paused"
    question = paused["question"]
    assert question["kind"] == "delivery" and question["can_continue"] is False
    assert "iteration budget" in question["rationale"]
    assert not (tmp_path / "p" / "summary.json").exists()

    # The budget is spent, so a rejection cannot send the Scientist back: the gate asks again.
    again = resume_run("p", runs_dir=tmp_path, answer={"approve": False, "reason": "keep looking"})
    assert again["status"] == "paused" and again["question"]["kind"] == "delivery"

    # Raising the budget reopens the search from the gate; the next delivery is asked about again.
    more = resume_run("p", runs_dir=tmp_path, max_iters=2)
    assert more["status"] == "paused" and more["question"]["iteration"] == 2

    done = resume_run("p", runs_dir=tmp_path, answer=True)
    assert done["status"] == "delivered" and done["iterations"] == 2
    assert [f["reason"] for f in done["feedback"]] == ["keep looking"]
    nodes = [r["node"] for r in run_history("p", tmp_path)]
    assert nodes.count("review") >= 2 and nodes[-1] == "deliver"


def test_a_rejected_delivery_goes_back_to_the_scientist_when_budget_is_left(penguins: Path, tmp_path: Path) -> None:
    asked: list[dict[str, Any]] = []

    def human(question: dict[str, Any]) -> Any:
        asked.append(question)
        return "keep going" if len(asked) == 1 else True

    # A scripted Scientist that delivers at once, each time it is asked (the playbook would tune first).
    deliver = answer({"action": "deliver", "rationale": "Scientist delivered: good enough"})
    summary = run_task(
        penguins,
        "species",
        run_id="d",
        context=context(tmp_path, max_iters=2, approve="delivery"),
        on_approval=human,
        scientist_model=ScriptedChatModel(messages=iter([deliver, deliver])),
    )
    assert [q["kind"] for q in asked] == ["delivery", "delivery"]
    assert asked[0]["can_continue"] is True and "Scientist delivered" in asked[0]["stop_reason"]
    nodes = [r["node"] for r in run_history("d", tmp_path)]
    assert nodes[nodes.index("review") + 1] == "scientist"  # the rejection sent the run back to the Scientist
    assert summary["status"] == "delivered"
    assert summary["feedback"] == [
        {"iteration": 0, "kind": "delivery", "proposal": asked[0]["stop_reason"], "move": None, "reason": "keep going"}
    ]


def test_approve_without_a_terminal_fails_clearly_and_writes_nothing(
    penguins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    code = main(["run", str(penguins), "--target", "species", "--approve", "--runs-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "ask at the terminal" in err and "Command(resume=" in err
    assert not any(tmp_path.iterdir())


def test_the_cli_asks_at_the_terminal(penguins: Path, tmp_path: Path) -> None:
    """A real terminal on standard input: reject the first proposal with a reason, approve the rest."""
    master, slave = pty.openpty()
    answers = "n\nsimpler models only\ny\ny\n"
    os.write(master, answers.encode())
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "tandem.cli",
            "run",
            str(penguins),
            "--target",
            "species",
            "--max-iters",
            "1",
            "--n-jobs",
            "1",
            "--approve",
            "proposals",
            "--runs-dir",
            str(tmp_path),
            "--run-id",
            "t",
        ],
        cwd=ROOT,
        stdin=slave,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "LANGSMITH_TRACING": "false"},
    )
    os.close(master)
    os.close(slave)
    assert process.returncode == 0, process.stderr
    assert process.stderr.count("== approval needed: proposal") == 2
    assert process.stderr.count("== approval needed: delivery") == 1
    assert "Why not? (the Scientist reads this)" in process.stderr
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["feedback"][0]["reason"] == "simpler models only"
    assert "Delivered experiment" in process.stdout  # stdout is a pipe: the plain lines


def test_rejecting_proposals_cannot_spend_past_the_budget(penguins: Path, tmp_path: Path) -> None:
    """A rejected proposal goes back to the Scientist without passing the reward node, where budgets
    are checked: with the budget spent, the gate now turns to the delivery instead of asking the
    Scientist (an LLM's tokens, a step's seconds) again and again."""
    paused = run_task(penguins, "species", run_id="r", context=context(tmp_path, max_iters=3, approve="proposals"))
    assert paused["status"] == "paused" and paused["question"]["kind"] == "proposal"
    spent = resume_run("r", runs_dir=tmp_path, time_budget=0.001, answer={"approve": False, "reason": "no"})
    assert spent["status"] == "paused" and spent["question"]["kind"] == "delivery"
    assert spent["question"]["can_continue"] is False and "time budget" in spent["question"]["stop_reason"]
    done = resume_run("r", runs_dir=tmp_path, answer=True)
    assert done["status"] == "delivered" and done["iterations"] == 0
