"""What `langgraph dev` serves (see langgraph.json): the graph with a server-side context, behind a guard.

The local server runs with the user's API key in its environment and writes run folders, so
whoever can drive it can spend the key and write files. Two things keep it the user's:

- `app`, mounted through langgraph.json's `http.app`, wraps every route (LangGraph puts a custom
  app's middleware outside its own) with `LocalOnly`: a request must name this machine as its
  `Host` (no DNS rebinding), may carry an `Origin` only if langgraph.json's CORS block allows it
  (the Studio page), and may send a body only as JSON. A web page can therefore neither read
  from the server nor fire a "simple" POST at it (`text/plain`, a form), which CORS alone would
  let through unanswered but executed.
- `graph` is `build_graph()` with `ServerContext`: the settings that decide where the key goes,
  which models it pays for and where files are written and read (`runs_dir`, `base_url`, model
  names, prices, Python models, `data_dir`) come from the server's environment, not from the
  request. They are left out of the context schema Studio shows, LangGraph's server drops them
  from a request's context, and `ServerContext(base_url=...)` is a `TypeError`. The task's CSV
  files must lie inside `data_dir` (`$TANDEM_DATA_DIR`, else `./data` of the server's working
  directory); `make studio` sets it to STUDIO_DATA.

`build_graph()` itself stays unrestricted: a Python caller is the user. Starlette comes with
LangGraph's server (the dev extra), the only place this module is imported.
"""

from __future__ import annotations

import functools
import json
import os
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.graph.assembly import TandemGraph, build_graph
from tandem.graph.context import TRANSIENT_FIELDS, RunContext
from tandem.tools.errors import InputError
from tandem.tools.tokens import load_prices

STUDIO_ORIGIN = "https://smith.langchain.com"
"""The origin of LangGraph Studio's web page, the one page allowed to drive the server."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
HOSTS_ENV = "TANDEM_STUDIO_HOSTS"
"""Extra host names the server answers to (comma-separated), for a deliberate `--host` other than loopback."""
DATA_DIR_ENV = "TANDEM_DATA_DIR"
MODEL_ENV = {
    "model": "TANDEM_MODEL",
    "scientist_model": "TANDEM_SCIENTIST_MODEL",
    "executor_model": "TANDEM_EXECUTOR_MODEL",
}
PRICES_ENV = "TANDEM_PRICES"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_ROOT = "/noauth"
"""The ASGI root path of LangGraph's in-process client (`get_client()` with no URL): not a network request."""


SERVER_DIR = Path.cwd()
"""The server's working directory, read once when it loads the graph. The context is built on the
server's event loop, where `langgraph dev` refuses blocking calls (`os.getcwd` among them), so its
defaults are computed from this without touching the disk."""


def _on_server(path: str) -> str:
    return os.path.normpath(os.path.join(SERVER_DIR, os.path.expanduser(path)))


def server_runs_dir() -> str:
    """`$TANDEM_RUNS_DIR`, else `./runs` of the server's working directory."""
    return _on_server(os.environ.get("TANDEM_RUNS_DIR") or "runs")


def server_data_dir() -> str:
    """`$TANDEM_DATA_DIR`, else `./data` of the server's working directory."""
    return _on_server(os.environ.get(DATA_DIR_ENV) or "data")


def _env_model(name: str) -> Any:
    default = next(f.default for f in fields(RunContext) if f.name == name)
    return lambda: os.environ.get(MODEL_ENV[name]) or default


def _server_prices() -> dict[str, dict[str, float]] | None:
    """`$TANDEM_PRICES`: a JSON price table file, as `--prices` takes."""
    path = os.environ.get(PRICES_ENV)
    if not path:
        return None
    return {model: {"input": price["input"], "output": price["output"]} for model, price in load_prices(path).items()}


@dataclass(frozen=True)
class ServerContext(RunContext):
    """The run context of the served graph: a request sets budgets, agent kinds and gates, nothing else.

    Each field below is `init=False`: its value comes from the server's environment whatever the
    request says. `base_url` stays None, which means `$OPENAI_BASE_URL` (else OpenAI).
    """

    runs_dir: str = field(init=False, default_factory=server_runs_dir)
    data_dir: str | None = field(init=False, default_factory=server_data_dir)
    base_url: str | None = field(init=False, default=None)
    model: str = field(init=False, default_factory=_env_model("model"))
    scientist_model: str | None = field(init=False, default_factory=_env_model("scientist_model"))
    executor_model: str | None = field(init=False, default_factory=_env_model("executor_model"))
    prices: dict[str, dict[str, float]] | None = field(init=False, default_factory=_server_prices, hash=False)
    python_models: tuple[str, ...] = field(init=False, default=())
    chat_models: dict[str, Any] | None = field(init=False, default=None, compare=False, hash=False, repr=False)
    run_id: str | None = field(init=False, default=None)
    task_data: Any = field(init=False, default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        """A request's context is JSON from Studio, not typed Python: each field it may set is checked
        against its type (and `rewards` becomes a `RewardConfig`). A wrong type is one line naming the
        field before setup, not a TypeError steps into the run. Field by field, not through a whole
        RunContext: that would compute the defaults (the working directory, a policy's path), and the
        server builds the context on its event loop, where blocking calls are refused."""
        from pydantic import ValidationError  # LangGraph's server has it loaded already

        adapters = _field_adapters()
        for f in fields(self):
            if not f.init or f.name in TRANSIENT_FIELDS:
                continue
            try:
                checked = adapters[f.name].validate_python(getattr(self, f.name))
            except ValidationError as exc:
                raise InputError(f"its setting {f.name} is not valid ({exc.errors()[0]['msg']})") from None
            object.__setattr__(self, f.name, checked)  # frozen: set once, here
        super().__post_init__()

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> Any:
        """The schema Studio's form shows, and LangGraph's server filters a request's context by:
        without the server-side fields."""
        schema = handler(core_schema)
        properties = handler.resolve_ref_schema(schema).get("properties", {})
        for name in server_side_fields():
            properties.pop(name, None)
        return schema


@functools.cache
def _field_adapters() -> dict[str, Any]:
    """pydantic's validator of each run-context field, by name, built once."""
    from pydantic import TypeAdapter

    return {name: TypeAdapter(hint) for name, hint in typing.get_type_hints(RunContext).items()}


def server_side_fields() -> frozenset[str]:
    """The context fields a request cannot choose."""
    return frozenset(f.name for f in fields(ServerContext) if not f.init)


def allowed_origins() -> frozenset[str]:
    """The origins langgraph.json's `http.cors` allows (the CLI passes that block as `$LANGGRAPH_HTTP`).

    Without one, only the Studio page: the guard never admits more than the CORS block does.
    """
    try:
        origins = json.loads(os.environ.get("LANGGRAPH_HTTP") or "{}").get("cors", {}).get("allow_origins")
    except (ValueError, AttributeError):
        origins = None
    return frozenset(origins) if isinstance(origins, list) and origins else frozenset({STUDIO_ORIGIN})


def allowed_hosts() -> frozenset[str]:
    extra = (h.strip().lower() for h in os.environ.get(HOSTS_ENV, "").split(","))
    return LOOPBACK_HOSTS | {h for h in extra if h}


def host_name(host_header: str) -> str:
    """`127.0.0.1:2024` -> `127.0.0.1`, `[::1]:2024` -> `::1`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def has_body(headers: Headers) -> bool:
    if "transfer-encoding" in headers:
        return True
    try:
        return int(headers.get("content-length") or 0) > 0
    except ValueError:
        return True


def refusal(scope: Scope, origins: Iterable[str], hosts: Iterable[str]) -> tuple[int, str] | None:
    """Why a request may not reach the server (status, one line), or None when it may."""
    if scope.get("root_path") == LOOPBACK_ROOT:
        return None
    headers = Headers(scope=scope)
    host = headers.get("host", "")
    if host_name(host) not in hosts:
        return 403, f"host {host!r} is not this machine's loopback address (set {HOSTS_ENV} to serve another name)"
    origin = headers.get("origin")
    if origin is not None and origin not in origins:
        return 403, f"origin {origin!r} may not use this server; only {', '.join(sorted(origins))} may"
    if scope.get("method") in BODY_METHODS and has_body(headers) and not is_json(headers.get("content-type", "")):
        return 415, "request bodies must be JSON (Content-Type: application/json)"
    return None


class LocalOnly:
    """ASGI middleware: refuse requests that a web page or a rebound DNS name could send (see the module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.origins = allowed_origins()
        self.hosts = allowed_hosts()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and (refused := refusal(scope, self.origins, self.hosts)):
            status, reason = refused
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": reason})
                return
            await JSONResponse({"detail": reason}, status_code=status)(scope, receive, send)
            return
        await self.app(scope, receive, send)


app = Starlette(middleware=[Middleware(LocalOnly)])
"""No routes of its own: LangGraph merges its routes into it and keeps this middleware outermost."""

graph: TandemGraph = build_graph(context_schema=ServerContext)
