"""MLflow tracking (`--mlflow`, `$TANDEM_MLFLOW_URI`, `tandem.tracking`), read back from a real store.

A small real run logs to a SQLite store in a temporary folder; the tests read it back through
`MlflowClient` (one parent run, one nested run per experiment with its spec, scores, rewards and
tokens), load the logged model with `mlflow.sklearn.load_model`, resume the run to check that
nothing is logged twice, and start a real `mlflow server` on that store (stopped by the test) to
see through its REST API, which the UI reads, that it lists the nested runs. Nothing needs the
network: MLflow's telemetry is off and the server listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import pytest

from tandem.api import run_history
from tandem.cli import main
from tandem.tools.data import read_table
from tandem.tracking import DEFAULT_URI, ENV_URI, MISSING, flatten, log_run, resolve_uri

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (pip install 'tandem-ml[mlflow]'; make test has it)")

RUN_ID = "penguins-mlflow"
# MLflow 3.17's SQL store still uses a SQLAlchemy loader SQLAlchemy 2.1 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*noload.*:DeprecationWarning")


@pytest.fixture(autouse=True)
def _offline_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv(ENV_URI, raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, penguins: Path) -> Iterator[dict[str, Any]]:
    """One real run (baseline + 2 experiments, 3 folds) logged live to a SQLite store."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    runs = root / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # anything MLflow would put in the working directory lands here
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv(ENV_URI, raising=False)
        argv = ["run", str(penguins), "--target", "species", "--max-iters", "2", "--folds", "3"]
        code = main([*argv, "--runs-dir", str(runs), "--run-id", RUN_ID, "--plain", "--mlflow", uri])
        assert code == 0
        yield {"uri": uri, "runs": runs, "folder": runs / RUN_ID, "root": root}


def client(uri: str) -> Any:
    return mlflow.MlflowClient(tracking_uri=uri)


def runs_of(uri: str, run_id: str = RUN_ID) -> tuple[Any, list[Any]]:
    """The parent run of a tandem run and its nested runs (by experiment id)."""
    c = client(uri)
    experiment = c.get_experiment_by_name("tandem")
    found = c.search_runs([experiment.experiment_id], filter_string=f"tags.`tandem.run_id` = '{run_id}'")
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    nested = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], sorted(nested, key=lambda r: int(r.data.tags["tandem.experiment_id"]))


def ledger(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "experiments.jsonl").read_text().splitlines()]


def test_one_parent_run_with_the_request_the_holdout_scores_and_the_report(store: dict[str, Any]) -> None:
    parent, _ = runs_of(store["uri"])
    summary = json.loads((store["folder"] / "summary.json").read_text())
    assert parent.info.run_name == RUN_ID and parent.info.status == "FINISHED"
    assert parent.data.params["target"] == "species" and parent.data.params["folds"] == "3"
    assert parent.data.tags["tandem.delivered_experiment"] == str(summary["best"]["experiment_id"])
    for metric, value in summary["best"]["holdout"].items():
        assert parent.data.metrics[f"holdout_{metric}"] == pytest.approx(value)
    artifacts = {a.path for a in client(store["uri"]).list_artifacts(parent.info.run_id)}
    assert {"report.html", "summary.json"} <= artifacts
    # The artifacts sit beside the store, not in whatever directory tandem ran from.
    assert (store["root"] / "store" / "mlruns" / "tandem").is_dir()


def test_each_experiment_is_a_nested_run_with_its_spec_scores_rewards_and_tokens(store: dict[str, Any]) -> None:
    _, nested = runs_of(store["uri"])
    rows = ledger(store["folder"])
    assert [int(r.data.tags["tandem.experiment_id"]) for r in nested] == [row["id"] for row in rows]
    assert len(rows) >= 3  # the baseline and two experiments (three more once resumed)
    c = client(store["uri"])
    for run, row in zip(nested, rows, strict=True):
        assert run.info.status == ("FINISHED" if row["status"] == "ok" else "FAILED")
        assert run.data.params == flatten(row["spec"])
        if row["spec"]["kind"] == "pipeline":
            assert run.data.params["model.family"] == row["spec"]["model"]["family"]
        for metric, value in row["cv"].items():
            assert run.data.metrics[f"cv_{metric}"] == pytest.approx(value)
            history = c.get_metric_history(run.info.run_id, f"fold_{metric}")
            assert [h.value for h in sorted(history, key=lambda h: h.step)] == pytest.approx(row["fold_scores"][metric])
        for agent, value in row["rewards"].items():
            assert run.data.metrics[f"reward_{agent}"] == pytest.approx(value)
        for agent, usage in row["tokens"].items():
            assert run.data.metrics[f"tokens_{agent}_input"] == usage["input"]
        assert run.data.tags["tandem.spec_hash"] == row["spec_hash"]
    delivered = [r.data.tags["tandem.experiment_id"] for r in nested if r.data.tags.get("tandem.delivered") == "true"]
    summary = json.loads((store["folder"] / "summary.json").read_text())
    assert delivered == [str(summary["best"]["experiment_id"])]


def test_the_logged_model_loads_with_mlflow_and_predicts_as_the_delivered_one(
    store: dict[str, Any], penguins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent, _ = runs_of(store["uri"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # MLflow 3.17 asks for it on any load
    model = mlflow.sklearn.load_model(parent.data.tags["tandem.model_uri"])
    frame = read_table(penguins).drop(columns=["species"]).sample(40, random_state=1)
    delivered = joblib.load(store["folder"] / "model.joblib")
    assert list(model.predict(frame)) == list(delivered.predict(frame))
    info = mlflow.models.get_model_info(parent.data.tags["tandem.model_uri"])
    assert info.signature is not None
    assert [c.name for c in info.signature.inputs.inputs] == list(frame.columns)


def test_resume_by_environment_logs_only_the_new_experiment(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`$TANDEM_MLFLOW_URI` turns tracking on; the resumed run finds its parent and its nested runs.
    A delivered run continues from before its delivery, so the id of the blend penguins' small-data
    delivery added goes to the next experiment, and its nested run is replaced, not kept."""
    parent_before, nested_before = runs_of(store["uri"])
    kept = [row for row in ledger(store["folder"]) if row["move"] != "delivery_blend"]
    monkeypatch.chdir(store["root"])
    monkeypatch.setenv(ENV_URI, store["uri"])
    code = main(["resume", RUN_ID, "--runs-dir", str(store["runs"]), "--max-iters", "3", "--force", "--plain"])
    assert code == 0
    parent, nested = runs_of(store["uri"])
    assert parent.info.run_id == parent_before.info.run_id and parent.info.status == "FINISHED"
    assert [r.info.run_id for r in nested[: len(kept)]] == [r.info.run_id for r in nested_before[: len(kept)]]
    rows = ledger(store["folder"])
    logged = [(int(r.data.tags["tandem.experiment_id"]), r.data.tags["tandem.spec_hash"]) for r in nested]
    assert logged == [(row["id"], str(row["spec_hash"])) for row in rows] and len(rows) > len(kept)
    # Logging the folder again from Python changes nothing either.
    assert log_run(RUN_ID, store["runs"], store["uri"]) == parent.info.run_id
    assert [r.info.run_id for r in runs_of(store["uri"])[1]] == [r.info.run_id for r in nested]


def test_resume_force_delivers_a_damaged_model_again_with_tracking_on(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tandem resume RUN --force` is what a damaged model's message advises; tracking's first sync
    of the folder read the damaged model and refused the very command."""
    runs = tmp_path / "runs"
    shutil.copytree(store["runs"], runs)
    (runs / RUN_ID / "model.joblib").write_bytes(b"damaged")
    uri = f"sqlite:///{tmp_path / 'other.db'}"  # a store that never saw this model
    monkeypatch.chdir(tmp_path)
    code = main(["resume", RUN_ID, "--runs-dir", str(runs), "--force", "--plain", "--mlflow", uri])
    assert code == 0, capsys.readouterr().err
    parent, nested = runs_of(uri)
    assert parent.info.status == "FINISHED" and len(nested) == len(ledger(runs / RUN_ID))


def test_a_copied_folder_resumed_with_tracking_never_writes_into_the_original_s_runs(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy carries the original's mlflow.json and, until its first resume adopts it, its id."""
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(store["folder"], runs / "copy")
    parent_before, nested_before = runs_of(store["uri"])
    monkeypatch.chdir(store["root"])
    code = main(
        ["resume", "copy", "--runs-dir", str(runs), "--max-iters", "3", "--force", "--plain", "--mlflow", store["uri"]]
    )
    assert code == 0
    parent, nested = runs_of(store["uri"])
    assert parent.info.run_id == parent_before.info.run_id
    assert [r.info.run_id for r in nested] == [r.info.run_id for r in nested_before]  # none added, none deleted
    copy_parent, copy_nested = runs_of(store["uri"], "copy")
    assert copy_parent.info.run_id != parent.info.run_id and len(copy_nested) == len(ledger(runs / "copy"))


def test_the_same_store_spelt_another_way_finds_the_run_s_parent(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mlflow.json` knows the parent under the URI as first typed; a relative spelling of the same
    database (another working directory, another habit) must not make a second parent run."""
    parent, nested = runs_of(store["uri"])
    monkeypatch.chdir(store["root"])
    assert log_run(RUN_ID, store["runs"], "sqlite:///store/mlflow.db") == parent.info.run_id
    assert [r.info.run_id for r in runs_of(store["uri"])[1]] == [r.info.run_id for r in nested]  # one parent, as before
    remembered = json.loads((store["folder"] / "mlflow.json").read_text())
    assert remembered["sqlite:///store/mlflow.db"]["parent_run_id"] == parent.info.run_id


def test_a_fork_is_a_parent_run_of_its_own(store: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    step = next(row["step"] for row in run_history(RUN_ID, store["runs"]) if row["node"] == "reward")
    _, original = runs_of(store["uri"])
    monkeypatch.chdir(store["root"])
    argv = ["fork", RUN_ID, "--from", str(step), "--run-id", "forked", "--runs-dir", str(store["runs"])]
    assert main([*argv, "--max-iters", "2", "--plain", "--mlflow", store["uri"]]) == 0
    parent, nested = runs_of(store["uri"], "forked")
    assert parent.info.status == "FINISHED" and parent.data.tags["tandem.forked_from"] == f"{RUN_ID} step {step}"
    assert [int(r.data.tags["tandem.experiment_id"]) for r in nested] == [
        row["id"] for row in ledger(store["runs"] / "forked")
    ]
    assert [r.info.run_id for r in runs_of(store["uri"])[1]] == [r.info.run_id for r in original]  # untouched


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


@contextmanager
def mlflow_server(store_uri: str, cwd: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `mlflow server` on `store_uri` (its URL and process), answering before it is
    yielded and stopped after (a test may stop it sooner, with `stop`)."""
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", store_uri]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the workers it starts are stopped with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                assert time.monotonic() < deadline, "mlflow server did not answer within 180 s"
                time.sleep(0.5)
        yield base, server
    finally:
        stop(server)


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_mlflow_server_lists_the_nested_runs(store: dict[str, Any]) -> None:
    """What MLflow's UI shows comes from this REST API: a real server on the store, stopped after."""
    parent, nested = runs_of(store["uri"])
    with mlflow_server(store["uri"], store["root"]) as (base, _):
        found = post(
            f"{base}/api/2.0/mlflow/runs/search",
            {
                "experiment_ids": [parent.info.experiment_id],
                "filter": f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                "max_results": 100,
            },
        )
    listed = {run["info"]["run_id"]: run for run in found["runs"]}
    assert set(listed) == {r.info.run_id for r in nested}
    names = sorted(run["info"]["run_name"] for run in listed.values())
    assert names == sorted(r.info.run_name for r in nested) and any(n.startswith("#0") for n in names)


def test_a_server_gone_mid_run_costs_one_warning_not_minutes_a_step(
    penguins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops after the run's first logged step. MLflow's own retries (about four minutes
    a call) held every later step: now the run warns once, goes on without live logging, and its
    end fails in one line that says how to log it when the server is back."""
    runs = tmp_path / "runs"
    ledger = runs / "gone" / "experiments.jsonl"
    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as (base, server):
        argv = ["run", str(penguins), "--target", "species", "--max-iters", "3", "--folds", "3", "--plain"]
        run = subprocess.Popen(
            [sys.executable, "-m", "tandem.cli", *argv, "--runs-dir", str(runs), "--run-id", "gone", "--mlflow", base],
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            while not (ledger.exists() and ledger.read_text().count("\n") >= 1) and run.poll() is None:
                time.sleep(0.05)
            stop(server)  # the baseline is logged: the server goes away for the rest of the run
            out, err = run.communicate(timeout=150)
        finally:
            run.kill()
    assert run.returncode == 2, out + err
    lines = err.strip().splitlines()
    assert sum("the run goes on and logs again at its end" in line for line in lines) == 1, err
    assert lines[-1].startswith(f"tandem: MLflow logging to {base} failed"), err
    assert "Traceback" not in err
    assert json.loads((runs / "gone" / "summary.json").read_text())["status"] == "delivered"
    # The command the message gives logs the whole run once a server answers (here on another port).
    again = shlex.split(lines[-1].partition("log it once the store answers with: ")[2])
    assert again[:4] == ["tandem", "resume", "gone", "--mlflow"] and again[4] == base, again
    monkeypatch.chdir(tmp_path)  # where the run was made, as the message's command expects
    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as (back, _):
        assert main([*again[1:4], back, *again[5:]]) == 0
        parent, nested = runs_of(back, "gone")
        assert parent.info.status == "FINISHED" and len(nested) == len(ledger.read_text().splitlines())


def test_without_the_extra_mlflow_is_one_line_and_exit_2(
    penguins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets without the extra
    runs = tmp_path / "runs"
    code = main(["run", str(penguins), "--target", "species", "--runs-dir", str(runs), "--mlflow", "--plain"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines() == [f"tandem: {MISSING}"] and "Traceback" not in out + err
    assert "pip install 'tandem-ml[mlflow]'" in err
    assert not runs.exists()  # refused before any work


@pytest.mark.parametrize("uri", ["unknown-scheme://x", "sqlite:///{tmp}/notadb.txt", "{tmp}/mlruns"])
def test_a_store_mlflow_cannot_open_is_one_line_and_exit_2_before_any_work(
    penguins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    """MLflow sets up its store in the client's constructor: an unknown scheme, a file that is not a
    database, a plain folder (MLflow 3 no longer takes file stores by default) fail there."""
    (tmp_path / "notadb.txt").write_text("not a database " * 100)
    runs = tmp_path / "runs"
    given = uri.format(tmp=tmp_path)
    code = main(["run", str(penguins), "--target", "species", "--runs-dir", str(runs), "--mlflow", given, "--plain"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in out + err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"tandem: cannot log to MLflow at {given}: ")
    assert not runs.exists()  # refused before any work


def test_which_store_the_option_and_the_environment_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_uri(None) is None  # no option, no environment: no tracking
    assert resolve_uri(DEFAULT_URI) == DEFAULT_URI  # --mlflow alone: MLflow's default store
    assert resolve_uri("sqlite:///x.db") == "sqlite:///x.db"
    monkeypatch.setenv(ENV_URI, "http://127.0.0.1:5000")
    assert resolve_uri(None) == resolve_uri(DEFAULT_URI) == "http://127.0.0.1:5000"
    assert resolve_uri("sqlite:///x.db") == "sqlite:///x.db"  # the option wins


def test_mlflows_default_store_is_sqlite_in_the_working_directory(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--mlflow` alone (here through `log_run`, for a run that was never tracked there) uses
    MLflow 3's default: `mlflow.db` in the working directory, artifacts in `mlruns/` beside it."""
    monkeypatch.chdir(tmp_path)
    parent = log_run(RUN_ID, store["runs"])
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlruns" / "tandem").is_dir()
    run = client(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(parent)
    assert run.info.status == "FINISHED" and run.data.tags["tandem.run_id"] == RUN_ID


def test_flatten_names_every_setting() -> None:
    spec = {
        "model": {"family": "lightgbm", "params": {"n_estimators": 300}},
        "columns": {"numeric": ["a", "b"]},
        "members": [{"model": {"family": "logistic", "params": {}}}],
        "bagging": None,
    }
    assert flatten(spec) == {
        "model.family": "lightgbm",
        "model.params.n_estimators": "300",
        "columns.numeric": '["a", "b"]',
        "members.0.model.family": "logistic",
        "members.0.model.params": "{}",
        "bagging": "null",
    }
