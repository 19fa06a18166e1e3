"""LangGraph Studio's local server: `make studio` serves the graph offline, driven here through its HTTP API.

The test starts the server the way a user does (`make studio`, with a free port and a private
STUDIO_HOME), creates a thread, runs the graph on the penguins data with the budget passed in the
run context, streams the node updates, and then answers an approval gate with `Command(resume=...)`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or not (BIN / "langgraph").exists(),
    reason="needs make and langgraph-cli[inmem] (the dev extra)",
)


MAKE_STUDIO = ["make", "--no-print-directory", "-o", ".venv/.dev-installed", "-o", ".venv/.installed", "studio"]


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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("studio")
    port = free_port()
    log = (home / "server.log").open("w")
    process = subprocess.Popen(
        # -o: the venv is already installed; BIN: the interpreter running the tests
        [*MAKE_STUDIO, f"BIN={BIN}", f"STUDIO_PORT={port}", f"STUDIO_HOME={home}"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so the server and make stop together
        env={k: v for k, v in os.environ.items() if k != "TANDEM_RUNS_DIR"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (home / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield url, home
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a user stops `make studio`
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


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
    run_dir = Path(values["run_dir"])
    assert run_dir == home / "runs" / "s1"  # outside the source tree, where `make studio` puts runs
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
