"""A bench on a real Dask LocalCluster (2 worker processes, 1 thread each) is the local bench.

The same tasks, players and seeds played as Dask tasks give the same rows (status, every holdout
score) and the same report tables as one process playing them in turn; a worker killed with
SIGKILL while it plays costs nothing but time; a coordinator killed with SIGKILL is resumed
(`tandem bench --resume`) without playing again the games it had stored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster

from tandem.benchmarks.bench import bench_report, run_bench
from tandem.benchmarks.players import parse_players
from tandem.benchmarks.results_store import ResultsStore
from tandem.benchmarks.tasks import select_tasks

ROOT = Path(__file__).resolve().parents[1]
TASKS, PLAYERS, SEEDS = "wine,diabetes", "linear,lightgbm", (0, 1)
OUTCOME = ("task", "seed", "player", "status", "score", "scores", "metric", "fingerprint", "budget")


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        with Client(cluster) as c:
            yield c
    finally:
        cluster.close()


def outcomes(store: ResultsStore, bench_id: str) -> list[dict[str, Any]]:
    """What a bench decided, in the report's order: everything but ids, clocks and wall times."""
    return [{k: r[k] for k in OUTCOME} for r in bench_report(store, bench_id).rows]


def tables(store: ResultsStore, bench_id: str) -> str:
    """The report's score and ratio tables (the cost table after them has wall times)."""
    return bench_report(store, bench_id).markdown.split("| player | AUP")[0]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResultsStore, str]:
    results = tmp_path_factory.mktemp("local")
    bench_id = run_bench(select_tasks(TASKS), parse_players(PLAYERS), seeds=SEEDS, budget=30, results_dir=results)
    store = ResultsStore(results)
    assert len(store.results(bench_id)) == 2 * 2 * 2 and all(r["status"] == "ok" for r in store.results(bench_id))
    return store, bench_id


def test_the_cluster_bench_is_the_local_bench_and_survives_a_killed_worker(
    client: Client, local: tuple[ResultsStore, str], tmp_path: Path
) -> None:
    pids = client.run(os.getpid)
    assert len(set(pids.values()) - {os.getpid()}) == 2  # two worker processes of their own
    killed: list[str] = []

    def kill_a_busy_worker(row: dict[str, Any]) -> None:
        """After the first result, SIGKILL a worker that is playing a game right now."""
        if killed:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            busy = [address for address, keys in client.processing().items() if keys]
            if busy:
                os.kill(client.run(os.getpid, workers=[busy[0]])[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.01)

    bench_id = run_bench(
        select_tasks(TASKS),
        parse_players(PLAYERS),
        seeds=SEEDS,
        budget=30,
        results_dir=tmp_path,
        cluster=client,
        on_result=kill_a_busy_worker,
    )
    assert killed, "no worker was busy to kill: the test proved nothing"
    store, reference = local
    mine = ResultsStore(tmp_path)
    assert len(mine.results(bench_id)) == 8  # each game stored once, by this process
    assert outcomes(mine, bench_id) == outcomes(store, reference)
    assert tables(mine, bench_id) == tables(store, reference)
    assert bench_report(mine, bench_id).profiles.aup == bench_report(store, reference).profiles.aup


def test_a_killed_coordinator_resumes_without_playing_stored_games_again(
    local: tuple[ResultsStore, str], tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "tandem.cli", "bench", "--tasks", TASKS, "--players", PLAYERS, "--budget", "30"]
    argv += ["--seeds", ",".join(map(str, SEEDS)), "--results-dir", str(tmp_path)]
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(  # a session of its own: the kill takes its local cluster's workers too
        [*argv, "--cluster", "local:2"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "results.sqlite").exists() or len(ResultsStore(tmp_path).results()) < 3:
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the bench never stored 3 games"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:  # whatever happened, no process of that session outlives the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        log.close()
    store = ResultsStore(tmp_path)
    (bench,) = store.benches("bench")
    before = {r["id"]: r for r in store.results(bench["bench_id"])}
    assert 3 <= len(before) < 8

    again = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "bench", "--resume", bench["bench_id"], "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TANDEM_CLUSTER": "local:2"},
    )
    assert again.returncode == 0, again.stdout + again.stderr
    after = store.results(bench["bench_id"])
    assert len(after) == 8  # the missing games, and only those
    assert all(before[i] == r for i, r in ((r["id"], r) for r in after) if i in before)  # stored rows untouched
    assert len({(r["task"], r["seed"], r["player"]) for r in after}) == 8
    reference_store, reference = local
    assert outcomes(store, bench["bench_id"]) == outcomes(reference_store, reference)
    assert "Dask dashboard: http" in again.stdout


def test_a_scheduler_that_cannot_be_reached_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "bench", "--tasks", "wine", "--players", "linear", "--results-dir",
         str(tmp_path), "--cluster", "tcp://127.0.0.1:9"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1].startswith("tandem: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    )


def test_a_league_on_the_cluster_has_the_local_elo_history(client: Client, tmp_path: Path) -> None:
    from tandem.benchmarks.league import run_league

    def history(results: Path, cluster: Client | None) -> list[tuple[Any, ...]]:
        players = parse_players("linear,lightgbm,tandem:max_iters=1")
        league = run_league(
            select_tasks(TASKS), players, results_dir=results, seeds=SEEDS, budget=30, rounds=3, cluster=cluster
        )
        return [
            (m["task"], m["seed"], m["player_a"], m["player_b"], m["score_a"], m["score_b"], m["rating_a_after"])
            for m in ResultsStore(results).matches()
            if m["league_id"] == league
        ]

    local = history(tmp_path / "local", None)
    assert len(local) == 3  # three players: one match a round
    assert history(tmp_path / "cluster", client) == local


# This test failed now and then inside the whole suite on a saturated 2-core machine, never alone.
# The likely cause, now fixed: two episodes of a batch on the same task wrote its cached CSV through
# one fixed temporary name, so one could read the other's half-written file. Until a saturated suite
# has shown it gone, it keeps one rerun (the rerun is reported) rather than a silent pass.
@pytest.mark.flaky(reruns=1)
def test_training_episodes_on_the_cluster_learn_the_local_policy(client: Client, tmp_path: Path) -> None:
    from tandem.benchmarks.learning import DEFAULT_POOL, select_pool, train

    tasks = select_pool(None, DEFAULT_POOL)[:2]

    def trained(where: str, cluster: Client | None) -> dict[str, Any]:
        policy = train(
            tasks, episodes=2, out=tmp_path / where / "policy.json", workers=2, max_iters=1, time_budget=None,
            seed=0, cluster=cluster,
        )  # fmt: skip
        return {"bandit": policy["bandit"], "rewards": policy["provenance"]["episode_rewards"]}

    local = trained("local", None)
    assert len(local["rewards"]) == 2
    assert trained("cluster", client) == local


def test_a_run_with_its_folds_on_a_cluster_keeps_the_local_ledger(tmp_path: Path) -> None:
    from crash import outcome

    from tandem.api import run_task
    from tandem.graph.context import RunContext

    penguins = ROOT / "examples" / "data" / "penguins.csv"
    run_task(penguins, "species", folds=3, run_id="here", context=RunContext(runs_dir=str(tmp_path), max_iters=2))
    argv = [sys.executable, "-m", "tandem.cli", "run", str(penguins), "--target", "species", "--folds", "3"]
    argv += ["--max-iters", "2", "--runs-dir", str(tmp_path), "--run-id", "there", "--plain", "--cluster", "local:2"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    here, there = outcome(tmp_path / "here"), outcome(tmp_path / "there")
    assert there["ledger"] == here["ledger"] and there["rewards"] == here["rewards"]
    # the same model and holdout scores; only the model file's bytes may differ (fitted on a worker)
    assert {k: v for k, v in there["summary"].items() if k != "model_sha256"} == {
        k: v for k, v in here["summary"].items() if k != "model_sha256"
    }


def test_inside_fold_fits_on_joblib_work_runs_on_the_workers() -> None:
    import joblib

    from tandem.run_cluster import fold_fits_on

    with fold_fits_on("local:2") as link:
        pids = joblib.Parallel(n_jobs=2)(joblib.delayed(os.getpid)() for _ in range(4))
    assert link and link.startswith("http")
    assert os.getpid() not in pids and len(set(pids)) >= 1
    with fold_fits_on(None):  # no address, no $TANDEM_CLUSTER: joblib as always
        assert joblib.Parallel(n_jobs=1)(joblib.delayed(os.getpid)() for _ in range(2)) == [os.getpid()] * 2


def test_fold_tasks_on_a_cluster_name_the_mapped_file_and_each_worker_maps_it_once(
    client: Client, tmp_path: Path
) -> None:
    import joblib
    import numpy as np
    from conftest import synthetic_frame

    from tandem.tools.spec import Columns, ModelSpec, PipelineSpec
    from tandem.tools.training import Problem, evaluate_spec

    frame = synthetic_frame(n=300, seed=5)
    path = tmp_path / "dev.joblib"  # as graph/persistence.py maps a run's development part
    joblib.dump((frame[["x 1", "x2 (cm)"]], frame["label"]), path)
    X, y = joblib.load(path, mmap_mode="r")
    folds = np.arange(len(y)) % 3
    problem = Problem("binary", ("f1_macro",), "f1_macro", classes=("no", "yes"), positive_class="yes")
    columns = Columns(numeric=("x 1", "x2 (cm)"))
    specs = [PipelineSpec(columns=columns, model=ModelSpec(family=f)) for f in ("logistic", "random_forest")]
    here = [evaluate_spec(s, X, y, folds, problem, n_jobs=2) for s in specs]
    with joblib.parallel_config(backend="dask"):
        there = [evaluate_spec(s, X, y, folds, problem, n_jobs=2, mapped_from=path) for s in specs]
    assert [(r.status, r.fold_scores) for r in there] == [(r.status, r.fold_scores) for r in here]

    def maps() -> tuple[int, int]:
        from tandem.tools.training import _mapped_file

        info = _mapped_file.cache_info()
        return info.misses, info.hits

    loads = client.run(maps)
    assert sum(m + h for m, h in loads.values()) == 2 * 3  # every fold took its data from the path
    assert all(m <= 1 for m, _ in loads.values())  # each worker mapped the file once, for both candidates
