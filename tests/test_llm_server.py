"""Whole `tandem` runs with LLM agents through the real `ChatOpenAI`, against a local scripted server.

Each test starts an OpenAI-compatible server on 127.0.0.1 (tests/openai_stub.py), points
`--base-url` at it and plays scripted models: a competent team improves the model through 429s,
5xx, a time-out and a malformed answer; an unfaithful Executor is caught by the verifier while
the Scientist is not blamed; a wasteful Scientist loses its reward to token penalties; a token
budget stops a run; a revoked key stops a run in one line and `tandem resume` finishes it. Every
test also checks that the key is nowhere under the run folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_stub import Fail, Garbage, OpenAIStub, Say, Slow
from scripted_models import (
    LIGHTGBM,
    SLOWER_BOOSTING,
    competent_scientist,
    faithful_executor,
    unfaithful_executor,
    wasteful_scientist,
)

from tandem.cli import EXIT_BAD_INPUT, EXIT_PROVIDER, main

API_KEY = "sk-tandem-test-9f8e7d6c5b4a3210SECRET"
SCIENTIST, EXECUTOR = "scripted-scientist", "scripted-executor"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIStub]:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    with OpenAIStub(API_KEY) as stub:
        yield stub


def tandem(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    _, err = capsys.readouterr()
    return code, err


def llm_run(server: OpenAIStub, csv: Path, runs: Path, run_id: str, *extra: str) -> list[str]:
    """The arguments of a short LLM run on the scripted server."""
    return [
        "run", str(csv), "--target", "Survived", "--runs-dir", str(runs), "--run-id", run_id,
        "--agents", "llm", "--scientist-model", SCIENTIST, "--executor-model", EXECUTOR,
        "--base-url", server.base_url, "--request-timeout", "1", "--n-jobs", "1", *extra,
    ]  # fmt: skip


def summary_of(runs: Path, run_id: str) -> dict:
    return json.loads((runs / run_id / "summary.json").read_text())


def assert_key_nowhere(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert API_KEY.encode() not in path.read_bytes(), path


def test_llm_team_improves_the_model_through_errors_and_counts_every_token(
    server: OpenAIStub, titanic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script(
        SCIENTIST, competent_scientist([LIGHTGBM, SLOWER_BOOSTING], first_tool=("target_relation", {"column": "Sex"}))
    )
    server.script(EXECUTOR, faithful_executor())
    server.inject(SCIENTIST, Fail(429, "rate limited", retry_after_ms=20))  # retried by the client
    server.inject(EXECUTOR, Fail(503, "overloaded"), Slow(1.5, Say("too late")))  # 5xx, then a time-out
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({SCIENTIST: {"input": 1.0, "output": 2.0}, EXECUTOR: {"input": 0.5, "output": 1.0}}))
    runs = tmp_path / "runs"

    code, err = tandem(capsys, *llm_run(server, titanic, runs, "team", "--max-iters", "2", "--prices", str(prices)))

    assert code == 0, err
    summary = summary_of(runs, "team")
    assert summary["best"]["experiment_id"] != 0
    assert summary["best"]["cv"]["f1_macro"] > summary["baseline"]["cv"]["f1_macro"] + 0.02
    assert summary["reward_parts"]["scientist"]["gain"] > 0 and summary["reward_parts"]["executor"]["gain"] > 0
    ledger = [json.loads(line) for line in (runs / "team" / "experiments.jsonl").read_text().splitlines()]
    assert [r["fidelity"] for r in ledger[1:3]] == [1.0, 1.0] and ledger[3:4] == ledger[-1:]  # then at most the blend
    assert [r["move"] for r in ledger[3:]] in ([], ["delivery_blend"])
    assert (
        ledger[1]["spec"]["model"]["family"] == "lightgbm"
        and ledger[2]["spec"]["model"]["params"]["learning_rate"] == 0.03
    )
    for role, model in (("scientist", SCIENTIST), ("executor", EXECUTOR)):
        reported = server.reported(model)
        assert (summary["tokens"][role]["input"], summary["tokens"][role]["output"]) == reported
        assert summary["reward_parts"][role]["tokens"] == pytest.approx(-1e-6 * sum(reported), abs=1e-6)
        assert summary["agents"][role] == {"kind": "llm", "model": model}
    expected = (server.reported(SCIENTIST)[0] * 1.0 + server.reported(SCIENTIST)[1] * 2.0) / 1e6
    assert summary["cost_usd"]["scientist"] == pytest.approx(expected, abs=1e-6)
    assert "Token cost" in (runs / "team" / "report.md").read_text()
    assert server.calls(SCIENTIST) == 4  # one look at the data and one proposal per step
    assert_key_nowhere(runs / "team")


def test_malformed_answers_get_one_repair_then_fail_the_step_and_the_loop_goes_on(
    server: OpenAIStub, titanic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(
        [
            Say("Sure! I think boosting would help here."),  # no JSON: repaired
            Say(json.dumps(LIGHTGBM)),
            Say('{"action": "experiment", "changes": [}'),  # broken JSON, twice: a failed step
            Say("I cannot help with that."),
        ]
    )
    server.script(SCIENTIST, lambda request: next(answers))
    server.script(EXECUTOR, faithful_executor(dry_run_first=False))
    runs = tmp_path / "runs"

    code, err = tandem(capsys, *llm_run(server, titanic, runs, "repairs", "--max-iters", "2"))

    assert code == 0, err
    ledger = [json.loads(line) for line in (runs / "repairs" / "experiments.jsonl").read_text().splitlines()]
    assert ledger[1]["status"] == "ok" and ledger[1]["spec"]["model"]["family"] == "lightgbm"
    assert ledger[2]["status"] == "failed" and "no valid proposal" in ledger[2]["error"]
    events = [json.loads(line) for line in (runs / "repairs" / "rewards.jsonl").read_text().splitlines()]
    failed = {e["agent"]: e["parts"] for e in events if e["experiment_id"] == 2}
    assert failed["scientist"]["invalid"] == -0.02 and failed["executor"]["failure"] == 0.0
    assert server.calls(EXECUTOR) == 1  # nothing to implement in the failed step: no tokens spent
    assert_key_nowhere(runs / "repairs")


def test_unfaithful_executor_pays_the_mismatch_and_the_scientist_is_not_blamed(
    server: OpenAIStub, titanic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script(SCIENTIST, competent_scientist([LIGHTGBM]))
    server.script(EXECUTOR, unfaithful_executor("random_forest", {"n_estimators": 50}))
    runs = tmp_path / "runs"

    code, err = tandem(capsys, *llm_run(server, titanic, runs, "unfaithful", "--max-iters", "1"))

    assert code == 0, err
    ledger = [json.loads(line) for line in (runs / "unfaithful" / "experiments.jsonl").read_text().splitlines()]
    (record,) = [r for r in ledger[1:] if r["move"] != "delivery_blend"]
    assert record["status"] == "ok" and record["fidelity"] < 1.0
    assert any("model.family" in issue for issue in record["verification"])
    parts = summary_of(runs, "unfaithful")["reward_parts"]
    assert parts["executor"]["mismatch"] == -0.01
    assert parts["scientist"]["gain"] == parts["scientist"]["insignificant"] == parts["scientist"]["invalid"] == 0.0
    assert parts["scientist"]["tokens"] < 0  # it still pays for its own tokens
    assert_key_nowhere(runs / "unfaithful")


def test_wasteful_scientist_loses_its_gain_to_token_penalties(
    server: OpenAIStub, titanic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script(SCIENTIST, wasteful_scientist([LIGHTGBM], calls=4, usage=(30_000, 200)))
    server.script(EXECUTOR, faithful_executor(dry_run_first=False))
    runs = tmp_path / "runs"

    code, err = tandem(capsys, *llm_run(server, titanic, runs, "wasteful", "--max-iters", "1"))

    assert code == 0, err
    summary = summary_of(runs, "wasteful")
    assert summary["tokens"]["scientist"] == {"input": 5 * 30_000, "output": 5 * 200}
    scientist = summary["reward_parts"]["scientist"]
    assert scientist["gain"] > 0 and scientist["tokens"] == pytest.approx(-1e-6 * 5 * 30_200)
    assert summary["rewards"]["scientist"] < 0 < summary["rewards"]["executor"]
    assert_key_nowhere(runs / "wasteful")


def test_token_budget_stops_the_run_and_delivers_the_incumbent(
    server: OpenAIStub, titanic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script(SCIENTIST, lambda request: Say(json.dumps(LIGHTGBM), usage=(3_000, 100)))
    server.script(EXECUTOR, faithful_executor(dry_run_first=False))
    runs = tmp_path / "runs"

    code, err = tandem(capsys, *llm_run(server, titanic, runs, "budget", "--max-iters", "3", "--token-budget", "3000"))

    assert code == 0, err
    summary = summary_of(runs, "budget")
    assert summary["iterations"] == 1 and "token budget" in summary["stop_reason"]
    # the incumbent, or on Titanic's small data the blend of it with the baseline
    assert summary["incumbent"] == 1
    assert summary["best"]["experiment_id"] == 1 or summary["best"]["spec"]["member_ids"] == [0, 1]


def test_revoked_key_stops_in_one_line_and_the_run_resumes_later(
    server: OpenAIStub, titanic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script(SCIENTIST, competent_scientist([LIGHTGBM]))
    server.script(EXECUTOR, faithful_executor(dry_run_first=False))
    server.revoke_after(1)  # the Scientist's first answer goes through, then every request gets 401
    runs = tmp_path / "runs"

    code, err = tandem(capsys, *llm_run(server, titanic, runs, "revoked", "--max-iters", "1"))

    assert code == EXIT_PROVIDER
    assert len(err.strip().splitlines()) == 1 and "OPENAI_API_KEY" in err and "tandem resume revoked" in err
    assert API_KEY not in err and not (runs / "revoked" / "summary.json").exists()
    assert_key_nowhere(runs / "revoked")  # the server echoed the key in its 401 body

    server.revoke_after(None)
    code, err = tandem(capsys, "resume", "revoked", "--runs-dir", str(runs))

    assert code == 0, err
    summary = summary_of(runs, "revoked")
    assert summary["status"] == "delivered" and summary["iterations"] == 1
    assert_key_nowhere(runs / "revoked")


def test_missing_key_is_one_line_naming_the_variable(
    titanic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    runs = tmp_path / "runs"

    code, err = tandem(
        capsys, "run", str(titanic), "--target", "Survived", "--runs-dir", str(runs), "--scientist", "llm"
    )

    assert code == EXIT_BAD_INPUT
    assert len(err.strip().splitlines()) == 1 and "OPENAI_API_KEY" in err and "scientist" in err
    assert not runs.exists() or not any(runs.iterdir())


def test_streamed_and_unreadable_replies_through_the_real_client(server: OpenAIStub) -> None:
    from langchain_openai import ChatOpenAI
    from test_llm_agents import LIGHTGBM as PLAIN_LIGHTGBM
    from test_llm_agents import Ledger, make_frame

    from tandem.nodes.agents.llm_scientist import LLMScientist

    server.script(SCIENTIST, lambda request: Say(json.dumps(PLAIN_LIGHTGBM), usage=(900, 40)))
    server.inject(SCIENTIST, Garbage())  # HTTP 200 whose body is not a completion: one repair
    streaming = ChatOpenAI(model=SCIENTIST, base_url=server.base_url, streaming=True, stream_usage=True, max_retries=0)
    agent = LLMScientist(streaming)

    reply = agent.propose(Ledger(make_frame(n=120)).view())

    assert reply.value.failure is None and reply.value.changes[0].family == "lightgbm"  # type: ignore[union-attr]
    assert agent.last_step is not None and agent.last_step.repairs == 1
    assert reply.usage["output"] == 40 and reply.usage["input"] > 900  # the unreadable call is counted locally
