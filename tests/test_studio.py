"""LangGraph Studio's local server: `make studio` serves the graph offline, driven here through its HTTP API.

The test starts the server the way a user does (`make studio`, with a free port and a private
STUDIO_HOME), creates a thread, runs the graph on the penguins data with the budget passed in the
run context, streams the node updates, and then answers an approval gate with `Command(resume=...)`.

Then it plays the attacker of docs/security.md: a web page (a foreign `Origin`, a `text/plain`
"simple" POST, a DNS-rebound `Host`) and a local process that sends valid JSON but a hostile run
context (its own `base_url` listener, a `runs_dir` elsewhere, its own model) and `/etc/passwd` as
the CSV. The server's key goes only to the chat server the server was started with.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from openai_stub import OpenAIStub
from scripted_models import competent_scientist

from tandem.graph.context import RewardConfig, RunContext
from tandem.tools.data import InputError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or not (BIN / "langgraph").exists(),
    reason="needs make and langgraph-cli[inmem] (the dev extra)",
)


MAKE_STUDIO = ["make", "--no-print-directory", "-o", ".venv/.dev-installed", "-o", ".venv/.installed", "studio"]
API_KEY = "sk-studio-test-0123456789SECRET"
SERVER_MODEL = "server-side-model"
"""The model the server is configured with (`$TANDEM_MODEL`); a request naming another is ignored."""
STUDIO_ORIGIN = "https://smith.langchain.com"
SERVER_ENV = ("TANDEM_", "OPENAI_", "LANGGRAPH_HTTP", "CORS_")
"""Variables the server must not inherit from the test's environment (it gets its own below)."""


def langgraph_api_files() -> dict[str, tuple[int, int]]:
    """The checkout's `.langgraph_api` (a `langgraph dev` started in the checkout leaves one): file -> (size, mtime)."""
    folder = ROOT / ".langgraph_api"
    files = sorted(folder.rglob("*")) if folder.is_dir() else []
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def langgraph_api_before() -> dict[str, tuple[int, int]]:
    """Taken before the server starts (autouse fixtures are set up first within their scope)."""
    return langgraph_api_files()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection and what it was sent: the attacker's."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.received: list[bytes] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(65536))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def chat() -> Iterator[OpenAIStub]:
    """The chat server the Studio server is configured with: its scripted Scientist delivers at once."""
    with OpenAIStub(API_KEY) as stub:
        stub.script(SERVER_MODEL, competent_scientist([]))
        yield stub


@pytest.fixture(scope="module")
def hostile() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


@contextmanager
def serving(command: list[str], cwd: Path, port: int, log_path: Path, env: dict[str, str]) -> Iterator[str]:
    """Start a server process, wait for `/ok`, yield its address; stop it with Ctrl-C as a user does."""
    log = log_path.open("w")
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so the server and make stop together
        env={k: v for k, v in os.environ.items() if not k.startswith(SERVER_ENV)} | env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chat: OpenAIStub, hostile: Listener) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("studio")
    port = free_port()
    # -o: the venv is already installed; BIN: the interpreter running the tests
    command = [*MAKE_STUDIO, f"BIN={BIN}", f"STUDIO_PORT={port}", f"STUDIO_HOME={home}"]
    env = {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": chat.base_url, "TANDEM_MODEL": SERVER_MODEL}
    with serving(command, ROOT, port, home / "server.log", env) as url:
        yield url, home


def stream(client: Any, thread_id: str, **kwargs: Any) -> list[tuple[str, Any]]:
    return [
        (part.event, part.data)
        for part in client.runs.stream(thread_id, "tandem", stream_mode="updates", **kwargs)
        if part.event == "updates"
    ]


def test_studio_runs_the_graph_offline_from_its_input_form(
    server: tuple[str, Path], penguins: Path, langgraph_api_before: dict[str, tuple[int, int]]
) -> None:
    from langgraph_sdk import get_sync_client

    url, home = server
    client = get_sync_client(url=url)
    assert [a["graph_id"] for a in client.assistants.search(graph_id="tandem")] == ["tandem"]
    schemas = client.assistants.get_schemas(client.assistants.search(graph_id="tandem")[0]["assistant_id"])
    form = schemas["input_schema"]["properties"]
    assert {"csv_path", "target", "metrics"} <= set(form)  # what Studio's input form shows
    assert "max_iters" in schemas["context_schema"]["properties"]

    thread = client.threads.create()
    updates = stream(
        client,
        thread["thread_id"],
        input={"csv_path": str(penguins), "target": "species", "metrics": ["f1_macro", "accuracy"], "run_id": "s1"},
        context={"max_iters": 2, "n_jobs": 1},
    )
    nodes = [next(iter(data)) for _, data in updates]
    assert nodes[0] == "setup" and nodes[-1] == "deliver"
    assert nodes.count("reward") == 2 and "review" not in nodes
    state = client.threads.get_state(thread["thread_id"])
    values = state["values"]
    assert values["status"] == "delivered" and len(values["ledger"]) == 3 and state["next"] == []
    assert values["task"]["metrics"] == ["f1_macro", "accuracy"]
    run_dir = home / "runs" / "s1"  # outside the source tree, where `make studio` puts runs
    assert (run_dir / "report.html").exists() and (run_dir / "model.joblib").exists()
    # the server keeps its own state in STUDIO_HOME and leaves the source tree as it found it
    assert (home / ".langgraph_api").is_dir()
    assert langgraph_api_files() == langgraph_api_before


def test_studio_pauses_at_an_approval_gate_and_resumes_with_a_command(server: tuple[str, Path], penguins: Path) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server[0])
    thread = client.threads.create()["thread_id"]
    context = {"max_iters": 1, "n_jobs": 1, "approve": "proposals"}  # passed on every call: not checkpointed
    first = stream(client, thread, input={"csv_path": str(penguins), "target": "species"}, context=context)
    assert "__interrupt__" in first[-1][1]
    state = client.threads.get_state(thread)
    question = state["interrupts"][0]["value"]
    assert state["next"] == ["review"] and question["kind"] == "proposal"

    stream(client, thread, command={"resume": {"approve": False, "reason": "not boosting"}}, context=context)
    state = client.threads.get_state(thread)
    assert state["values"]["feedback"][0]["reason"] == "not boosting"
    assert state["interrupts"][0]["value"]["move"] != question["move"]  # the Scientist moved on

    for _ in range(3):  # approve the new proposal, then the delivery
        if not client.threads.get_state(thread)["next"]:
            break
        stream(client, thread, command={"resume": True}, context=context)
    assert client.threads.get_state(thread)["values"]["status"] == "delivered"


def http(url: str, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, dict, str]:
    """A raw request (status, lower-cased headers, body), as a browser or a script would send it."""
    request = urllib.request.Request(url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode()


def hostile_context(listener: Listener, elsewhere: Path) -> dict[str, Any]:
    """A run context choosing where the key goes, which model it pays for and where files go."""
    return {
        "scientist": "llm",
        "base_url": listener.url,
        "runs_dir": str(elsewhere),
        "data_dir": "/",
        "model": "attacker-model",
        "scientist_model": "attacker-model",
        "python_models": [],
        "max_iters": 1,
        "n_jobs": 1,
        "max_retries": 0,
    }


def test_web_pages_cannot_drive_the_server(server: tuple[str, Path], hostile: Listener, tmp_path: Path) -> None:
    url, home = server
    elsewhere = tmp_path / "elsewhere"
    payload = {
        "assistant_id": "tandem",
        "input": {"csv_path": "/etc/passwd", "target": "root"},
        "context": hostile_context(hostile, elsewhere),
    }
    body = json.dumps(payload).encode()
    before = sorted(p.name for p in (home / "runs").iterdir())

    # a page's fetch() with JSON: the browser sends its Origin
    status, headers, text = http(
        url, "POST", "/runs/wait", body, **{"Content-Type": "application/json", "Origin": "https://evil.example"}
    )
    assert status == 403 and "evil.example" in text and "access-control-allow-origin" not in headers
    # a "simple" POST (no preflight): text/plain, with and without an Origin (an old browser, a plug-in)
    for extra in ({"Origin": "https://evil.example"}, {}):
        status, headers, text = http(url, "POST", "/runs/wait", body, **{"Content-Type": "text/plain", **extra})
        assert status in (403, 415) and "access-control-allow-origin" not in headers
    assert http(url, "POST", "/runs/wait", body, **{"Content-Type": "text/plain"})[0] == 415
    # the CORS preflight: refused for the page, answered for Studio
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    status, headers, _ = http(url, "OPTIONS", "/runs/wait", **preflight, Origin="https://evil.example")
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, _ = http(url, "OPTIONS", "/runs/wait", **preflight, Origin=STUDIO_ORIGIN)
    assert status == 200 and headers["access-control-allow-origin"] == STUDIO_ORIGIN
    # DNS rebinding: the page's own name resolved to 127.0.0.1 (same-origin reads carry no Origin)
    status, _, text = http(url, "GET", "/ok", Host="evil.example")
    assert status == 403 and "TANDEM_STUDIO_HOSTS" in text

    assert hostile.received == []
    assert not elsewhere.exists()
    assert sorted(p.name for p in (home / "runs").iterdir()) == before


def test_a_request_cannot_choose_the_key_s_endpoint_the_model_or_the_folders(
    server: tuple[str, Path], chat: OpenAIStub, hostile: Listener, penguins: Path, tmp_path: Path
) -> None:
    from langgraph_sdk import get_sync_client

    url, home = server
    client = get_sync_client(url=url)  # JSON, no Origin: what any local process can send
    schema = client.assistants.get_schemas(client.assistants.search(graph_id="tandem")[0]["assistant_id"])
    form = set(schema["context_schema"]["properties"])
    assert {"max_iters", "scientist", "approve"} <= form
    assert not form & {"runs_dir", "data_dir", "base_url", "model", "scientist_model", "prices", "python_models"}

    elsewhere = tmp_path / "elsewhere"
    thread = client.threads.create()["thread_id"]
    result = client.runs.wait(
        thread,
        "tandem",
        input={"csv_path": str(penguins), "target": "species", "run_id": "guarded"},
        context=hostile_context(hostile, elsewhere),
        raise_error=False,
    )
    assert "__error__" not in result, result
    values = client.threads.get_state(thread)["values"]
    assert values["status"] == "delivered"
    assert (home / "runs" / "guarded" / "summary.json").exists()  # the server's runs dir, not the request's
    assert chat.calls(SERVER_MODEL) >= 1  # the server's model on the server's endpoint, with its key
    assert hostile.received == []
    assert not elsewhere.exists()
    summary = json.loads((home / "runs" / "guarded" / "summary.json").read_text())
    assert summary["agents"]["scientist"] == {"kind": "llm", "model": SERVER_MODEL}


def test_data_outside_the_data_folder_is_refused_without_its_contents(
    server: tuple[str, Path], penguins: Path, hostile: Listener, tmp_path: Path
) -> None:
    from langgraph_sdk import get_sync_client

    url, home = server
    client = get_sync_client(url=url)
    before = sorted(p.name for p in (home / "runs").iterdir())
    secret = tmp_path / "secret.csv"
    secret.write_text("password,owner\nhunter2-SECRET,alice\n")
    lines = [line for line in Path("/etc/passwd").read_text().splitlines() if line.strip()]
    for request in (
        {"csv_path": "/etc/passwd", "target": "root", "run_id": "passwd"},
        {"csv_path": str(secret), "target": "password"},
        {"csv_path": str(penguins), "target": "species", "holdout_csv": str(secret)},
        {"csv_path": str(penguins.parent / ".." / ".." / "pyproject.toml"), "target": "name"},
    ):
        thread = client.threads.create()["thread_id"]
        result = client.runs.wait(thread, "tandem", input=request, context={"max_iters": 1}, raise_error=False)
        message = result["__error__"]["message"]
        assert "outside the data folder" in message and "\n" not in message, message
        assert "SECRET" not in message and "hunter2" not in message
        assert not any(line in message for line in lines)
    assert sorted(p.name for p in (home / "runs").iterdir()) == before  # nothing written for a refused task
    assert hostile.received == []


def test_the_data_folder_check_follows_links_and_python_callers_are_unrestricted(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside.csv"
    data.mkdir()
    outside.write_text("a,b\n1,2\n")
    (data / "ok.csv").write_text("a,b\n1,2\n")
    (data / "link.csv").symlink_to(outside)
    confined = RunContext(data_dir=str(data))
    confined.check_data_paths({"csv_path": str(data / "ok.csv"), "holdout_csv": None})
    for bad in ({"csv_path": str(data / "link.csv")}, {"csv_path": str(data / ".." / "outside.csv")}):
        with pytest.raises(InputError, match="outside the data folder"):
            confined.check_data_paths(bad)
    RunContext().check_data_paths({"csv_path": "/etc/passwd"})  # a Python or CLI caller is the user


def test_server_context_takes_paths_endpoint_and_models_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tandem.studio import ServerContext, refusal  # needs Starlette, from the dev extra like the server

    monkeypatch.setenv("TANDEM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TANDEM_MODEL", "m-server")
    context = ServerContext(max_iters=3, scientist="llm")
    assert (context.runs_dir, context.data_dir, context.model_name("scientist")) == (
        str(tmp_path / "runs"),
        str(tmp_path / "data"),
        "m-server",
    )
    assert context.base_url is None and context.max_iters == 3  # None: $OPENAI_BASE_URL, the server's
    for field_name in ("base_url", "runs_dir", "data_dir", "model", "chat_models"):
        with pytest.raises(TypeError):
            ServerContext(**{field_name: "x"})
    # a request's context is JSON: checked field by field before setup, not a TypeError steps into the run
    sent = ServerContext(rewards={"token_cost": 0}, max_iters="5")  # type: ignore[arg-type]
    assert isinstance(sent.rewards, RewardConfig) and sent.rewards.token_cost == 0 and sent.max_iters == 5
    for wrong, name in (({"time_budget": "abc"}, "time_budget"), ({"patience": None}, "patience")):
        with pytest.raises(InputError, match=f"its setting {name} is not valid"):
            ServerContext(**wrong)

    def scope(host: str, **extra: Any) -> dict[str, Any]:
        headers = [(b"host", host.encode())] + [(k.encode(), v.encode()) for k, v in extra.items()]
        return {"type": "http", "method": "POST", "headers": headers, "root_path": ""}

    origins, hosts = {STUDIO_ORIGIN}, {"127.0.0.1", "localhost", "::1"}
    assert refusal(scope("[::1]:2024", origin=STUDIO_ORIGIN), origins, hosts) is None
    json_body = {"content-type": "application/json", "content-length": "2"}
    form_body = {"content-type": "application/x-www-form-urlencoded", "content-length": "3"}
    assert refusal(scope("localhost:2024", **json_body), origins, hosts) is None
    assert refusal(scope("127.0.0.1:2024", origin="null"), origins, hosts) is not None  # sandboxed frames, file://
    assert (refusal(scope("127.0.0.1:2024", **form_body), origins, hosts) or (0,))[0] == 415
    assert refusal(scope("127.0.0.1.evil.example"), origins, hosts) is not None


def test_plain_langgraph_dev_confines_runs_to_its_working_directory(tmp_path: Path, penguins: Path) -> None:
    """`langgraph dev` as LangGraph's docs teach: run where langgraph.json is, no tandem variables set."""
    from langgraph_sdk import get_sync_client

    (tmp_path / "langgraph.json").write_text((ROOT / "langgraph.json").read_text())
    (tmp_path / "data").mkdir()
    shutil.copy(penguins, tmp_path / "data" / "penguins.csv")
    port = free_port()
    command = [str(BIN / "langgraph"), "dev", "--port", str(port), "--no-browser", "--no-reload"]
    quiet = {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true", "LANGSMITH_TRACING": "false"}
    with serving(command, tmp_path, port, tmp_path.parent / "plain.log", quiet) as url:
        foreign = {"Content-Type": "application/json", "Origin": "https://evil.example"}
        assert http(url, "POST", "/threads", b"{}", **foreign)[0] == 403
        client = get_sync_client(url=url)
        outcomes = {}
        for csv_path in ("data/penguins.csv", str(penguins)):  # ./data is the data folder; examples/ is not
            thread = client.threads.create()["thread_id"]
            request = {"csv_path": csv_path, "target": "species", "run_id": "plain"}
            outcomes[csv_path] = client.runs.wait(
                thread, "tandem", input=request, context={"max_iters": 1, "n_jobs": 1}, raise_error=False
            )
    assert "__error__" not in outcomes["data/penguins.csv"], outcomes
    assert "outside the data folder" in outcomes[str(penguins)]["__error__"]["message"]
    assert (tmp_path / "runs" / "plain" / "summary.json").exists()
