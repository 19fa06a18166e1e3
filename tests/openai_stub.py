"""A local OpenAI-compatible chat server for tests: scripted models behind the real `ChatOpenAI`.

It serves `POST /v1/chat/completions` on 127.0.0.1 from a thread (stdlib only) and plays one script
per model name: plain answers, tool calls, explicit usage, and the misbehaviour a real
deployment shows — HTTP 429 with Retry-After, 5xx, 401 for a wrong or revoked key (echoing the
key back, as some servers do), slow answers, a body that is not JSON. Streaming requests get
server-sent events with a usage chunk. Every successful answer's `usage` is logged per model, so a
test can compare what tandem recorded with what the server reported.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Say:
    """An assistant message: text content and/or tool calls `(name, args)`."""

    content: str = ""
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    usage: tuple[int, int] | None = None
    """(prompt_tokens, completion_tokens) to report; default: a count derived from the request."""


@dataclass(frozen=True)
class Fail:
    """An HTTP error (429, 500, 401…) with an OpenAI-style error body."""

    status: int
    message: str = "scripted failure"
    retry_after_ms: int | None = None


@dataclass(frozen=True)
class Slow:
    """Answer after `seconds` (longer than the client's time-out: it gives up and retries)."""

    seconds: float
    then: Say


@dataclass(frozen=True)
class Garbage:
    """HTTP 200 with a body that is not a chat completion."""

    body: str = "<html>this is not json"


Reply = Say | Fail | Slow | Garbage


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    index: int
    """How many requests this model's script answered before this one."""

    @property
    def last(self) -> dict[str, Any]:
        return self.messages[-1]

    def text(self, role: str = "user") -> str:
        """The content of the first message of a role."""
        return next((str(m.get("content") or "") for m in self.messages if m["role"] == role), "")


Script = Callable[[ChatRequest], Reply]


@dataclass
class StubState:
    scripts: dict[str, Script] = field(default_factory=dict)
    injected: dict[str, deque[Reply]] = field(default_factory=lambda: defaultdict(deque))
    accepted_keys: set[str] = field(default_factory=set)
    answered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    usage_log: list[tuple[str, int, int]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    revoke_after: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class OpenAIStub:
    """Start with `with OpenAIStub(key) as server:`; `server.base_url` goes to `--base-url`."""

    def __init__(self, api_key: str) -> None:
        self.state = StubState(accepted_keys={api_key})
        handler = type("Handler", (_Handler,), {"stub": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> OpenAIStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def script(self, model: str, script: Script) -> None:
        self.state.scripts[model] = script

    def inject(self, model: str, *replies: Reply) -> None:
        """Replies served before the script's next answer (errors, slow answers)."""
        self.state.injected[model].extend(replies)

    def revoke_after(self, n_requests: int | None) -> None:
        """Answer 401 to every request once `n_requests` more have been answered (None: accept again)."""
        with self.state.lock:
            self.state.revoke_after = None if n_requests is None else len(self.state.requests) + n_requests

    def reported(self, model: str) -> tuple[int, int]:
        """Total (prompt, completion) tokens this server reported for a model's answers."""
        rows = [(p, c) for m, p, c in self.state.usage_log if m == model]
        return sum(p for p, _ in rows), sum(c for _, c in rows)

    def calls(self, model: str) -> int:
        return self.state.answered[model]


class _Handler(BaseHTTPRequestHandler):
    stub: StubState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        key = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        reply = self._choose(body, key)
        if isinstance(reply, Slow):
            time.sleep(reply.seconds)
            return self._answer(body, reply.then, log=False)
        if isinstance(reply, Fail):
            headers = {"retry-after-ms": str(reply.retry_after_ms)} if reply.retry_after_ms is not None else {}
            err = {"error": {"message": reply.message, "type": "scripted", "code": reply.status}}
            return self._json(reply.status, err, headers)
        if isinstance(reply, Garbage):
            return self._raw(200, reply.body.encode(), "application/json")
        return self._answer(body, reply, log=True)

    def _choose(self, body: dict[str, Any], key: str) -> Reply:
        stub, model = self.stub, str(body.get("model"))
        with stub.lock:
            stub.requests.append(body)
            revoked = stub.revoke_after is not None and len(stub.requests) > stub.revoke_after
            if revoked or key not in stub.accepted_keys:
                return Fail(401, f"Incorrect API key provided: {key}. You can find your API key at the dashboard.")
            if stub.injected[model]:
                return stub.injected[model].popleft()
            script = stub.scripts.get(model)
            if script is None:
                return Fail(404, f"The model `{model}` does not exist")
            request = ChatRequest(model, body.get("messages", []), body.get("tools", []), stub.answered[model])
            stub.answered[model] += 1
        return script(request)

    def _answer(self, body: dict[str, Any], say: Say, log: bool) -> None:
        model = str(body.get("model"))
        calls = [
            {
                "id": f"call_{i}_{time.monotonic_ns()}",
                "type": "function",
                "function": {"name": n, "arguments": json.dumps(a)},
            }
            for i, (n, a) in enumerate(say.tool_calls)
        ]
        prompt, completion = say.usage or (
            len(json.dumps(body.get("messages", []))) // 4 + 11,
            len(say.content + json.dumps([c["function"] for c in calls])) // 4 + 1,
        )
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if log:
            with self.stub.lock:
                self.stub.usage_log.append((model, prompt, completion))
        message: dict[str, Any] = {"role": "assistant", "content": say.content or None}
        if calls:
            message["tool_calls"] = calls
        finish = "tool_calls" if calls else "stop"
        if body.get("stream"):
            return self._stream(model, message, finish, usage, body)
        choice = {"index": 0, "message": message, "finish_reason": finish}
        self._json(
            200,
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": usage,
            },
        )

    def _stream(
        self, model: str, message: dict[str, Any], finish: str, usage: dict[str, int], body: dict[str, Any]
    ) -> None:
        delta = dict(message)
        if "tool_calls" in delta:
            delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(delta["tool_calls"])]
        base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        payload = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        self._raw(200, payload.encode(), "text/event-stream")

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(data).encode(), "application/json", headers)

    def _raw(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a time-out): nothing to do
            pass
