"""The LLM Scientist's prompt carries a learned policy's ranking of the moves still open, bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fake_chat import ScriptedChatModel
from test_llm_agents import Ledger, make_frame

from tandem.graph.context import RunContext
from tandem.nodes.agents import make_scientist
from tandem.nodes.agents.learned_scientist import LearnedScientist, SearchState, context_vectors, learn, new_policy
from tandem.nodes.agents.llm_scientist import LLMScientist
from tandem.nodes.agents.prompts import POLICY_HINT_CHARS, POLICY_HINT_MOVES, ColumnNames, policy_hint
from tandem.tools.policy_file import write_policy
from tandem.tools.tokens import count_prompt_tokens


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


def trained_for(run: Ledger, move: str) -> dict[str, Any]:
    """A policy that has seen `move` pay well (and `stronger_family` pay badly) in this very context."""
    contexts = context_vectors(SearchState.of(run.view()))
    steps = [(move, contexts[move], 3.0)] * 20 + [("stronger_family", contexts["stronger_family"], -3.0)] * 20
    return learn(new_policy(), steps)


def user_prompt(agent: LLMScientist, run: Ledger, frame: pd.DataFrame) -> str:
    return str(agent.messages(run.view(), ColumnNames(frame.columns))[1].content)


def test_the_policys_ranking_of_open_moves_is_in_the_prompt(frame: pd.DataFrame) -> None:
    run = Ledger(frame)
    policy = trained_for(run, "missing_indicators")
    plain = user_prompt(LLMScientist(ScriptedChatModel()), run, frame)
    advised = user_prompt(LLMScientist(ScriptedChatModel(), policy=policy), run, frame)
    assert "Learned policy" not in plain and "Learned policy" in advised
    ranking = LearnedScientist(policy).ranking(run.view())
    assert ranking[0][0] != "stronger_family" and ranking[-1][0] == "stronger_family"
    hint = advised.split("Learned policy", 1)[1]
    assert f"\n1. {ranking[0][0]}: " in hint and f"({ranking[0][1]:+.2f})" in hint
    assert "stronger_family" not in hint  # the move that earned least is not advised
    assert "target_transform" not in dict(ranking)  # a regression-only move is not open on a binary task
    assert advised.rstrip().endswith("Reply with the JSON object only.")  # the ask stays last


def test_the_hint_is_bounded_whatever_the_policy(frame: pd.DataFrame) -> None:
    long = [(f"move_{i}_" + "x" * 300, 1.0 - i / 100) for i in range(200)]
    text = policy_hint(long)
    assert len(text) <= POLICY_HINT_CHARS and text.count("\n") == POLICY_HINT_MOVES
    assert policy_hint([]) == ""
    run = Ledger(frame)
    names = ColumnNames(frame.columns)
    plain = count_prompt_tokens(LLMScientist(ScriptedChatModel()).messages(run.view(), names), [])
    advised_agent = LLMScientist(ScriptedChatModel(), policy=trained_for(run, "interactions"))
    advised = count_prompt_tokens(advised_agent.messages(run.view(), names), [])
    assert 0 < advised - plain <= POLICY_HINT_CHARS // 2  # a few hundred tokens at most


def test_a_run_with_a_policy_gives_the_llm_scientist_its_advice(
    tmp_path: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-000000000")
    path = tmp_path / "policy.json"
    write_policy(path, trained_for(Ledger(frame), "interactions"))
    agent = make_scientist(RunContext(runs_dir=str(tmp_path), scientist="llm", policy=str(path)))
    assert isinstance(agent, LLMScientist) and agent.advisor is not None
    assert make_scientist(RunContext(runs_dir=str(tmp_path), scientist="llm")).advisor is None  # type: ignore[attr-defined]
