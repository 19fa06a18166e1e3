"""Speed benchmarks of the environment itself (issue 5), measured by running tandem, not by timed tests.

Why a script and a separate process per run: timings and peak memory are properties of a whole
run on a real machine, so every run here executes in a child process (`_run` mode) while the
parent samples the resident memory of that process and all its workers (joblib's loky
processes: proportional set size, so memory-mapped data shared by workers counts once) ten times
a second. Nothing in tandem is changed to be measured: the child wraps the
functions that fit models (cross-validation, the Executor's dry run, delivery's refit and holdout
scoring) with a timer, and time-stamps every node update the graph streams. Per iteration (from
one reward update to the next), the environment's overhead is the iteration's wall time minus
the time spent inside those functions: graph, checkpoints, profile lookups, proposal, spec
building, verification, reward and ledger.

    .venv/bin/python scripts/speed.py all          # everything (about 20-30 minutes on 2 CPUs)
    .venv/bin/python scripts/speed.py overhead     # Adult income only
    .venv/bin/python scripts/speed.py profile      # 1M x 30 generated CSV: read + profile
    .venv/bin/python scripts/speed.py profile5m    # 5M x 30 generated CSV (about 1.9 GB): read + profile
    .venv/bin/python scripts/speed.py scaling      # 10k / 100k / 1M rows; the 1M run is the whole-run check
    .venv/bin/python scripts/speed.py plain1m      # the 1M run without compact dtypes and the mapped frame
    .venv/bin/python scripts/speed.py bounded1m    # the 1M run with --memory-limit 3x the issue's frame

Results go to benchmarks/results/speed.json (one key per part, each with machine, date and
load average); scripts/benchmarks_doc.py turns them into docs/benchmarks.md and the plot.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "speed.json"
WORK = Path(os.environ.get("TANDEM_SPEED_DIR", "/tmp/tandem-speed"))
ADULT = ROOT / "benchmarks" / "data" / "adult_income.csv.gz"
N_COLUMNS = 30  # 29 features + the target


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------


def generate(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """A learnable binary task with 30 columns: 18 float, 6 integer, 4 categorical, 1 flag, the target."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(18):
        col = rng.normal(loc=i % 5, scale=1 + i % 3, size=n_rows)
        if i % 6 == 0:
            col[rng.random(n_rows) < 0.05] = np.nan
        data[f"num_{i:02d}"] = col
    for i in range(6):
        data[f"int_{i}"] = rng.poisson(lam=3 + 2 * i, size=n_rows)
    for i, cardinality in enumerate((5, 12, 50, 200)):
        codes = rng.integers(0, cardinality, size=n_rows)
        data[f"cat_{i}"] = np.asarray([f"c{i}_{k}" for k in range(cardinality)], dtype=object)[codes]
    data["flag"] = np.where(rng.random(n_rows) < 0.3, "yes", "no")
    frame = pd.DataFrame(data)
    cat_effect = (pd.Series(data["cat_1"]).str.len().to_numpy() % 3) - 1.0
    logit = (
        0.8 * np.nan_to_num(data["num_00"] - 0.0)
        - 0.6 * data["num_03"]
        + 0.4 * data["num_07"] * (data["flag"] == "yes")
        + 0.3 * np.sin(data["num_11"])
        + 0.25 * (data["int_2"] - 7)
        + 0.7 * cat_effect
        - 0.5
    )
    frame["target"] = (logit + rng.logistic(size=n_rows) > 0).astype(int)
    assert frame.shape[1] == N_COLUMNS
    return frame


#: Above this many rows the CSV is written in chunks of this size, each generated with its own seed.
CHUNK_ROWS = 1_000_000


def generated_csv(n_rows: int) -> Path:
    """The generated CSV of `n_rows` rows under TANDEM_SPEED_DIR, made once.

    Up to `CHUNK_ROWS` rows it is `generate(n_rows)` (the sizes measured so far keep their data);
    larger files are written chunk by chunk (chunk i from seed i), so making the 5M-row file
    holds one million rows in memory, not five.
    """
    path = WORK / f"generated_{n_rows}.csv"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        if n_rows <= CHUNK_ROWS:
            generate(n_rows).to_csv(tmp, index=False)
        else:
            with tmp.open("w", newline="") as fh:
                for i, start in enumerate(range(0, n_rows, CHUNK_ROWS)):
                    generate(min(CHUNK_ROWS, n_rows - start), seed=i).to_csv(fh, index=False, header=i == 0)
        tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------
# The child: one measured run
# ------------------------------------------------------------------------------------------


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def child_run(
    csv: str,
    target: str,
    max_iters: int,
    time_budget: float,
    out: str,
    plain: bool = False,
    memory_limit: int | None = None,
) -> None:
    """Run tandem once, recording node end times and every model-fitting interval.

    `plain` switches off what issue 10 added for memory (compact dtypes at read time, the
    memory-mapped development frame), to measure the same code and data without them;
    `memory_limit` is the run's `--memory-limit`.
    """
    import tandem.graph.persistence
    import tandem.nodes.deliver
    import tandem.nodes.evaluator
    import tandem.nodes.executor
    import tandem.tools.data
    import tandem.tools.training
    from tandem.api import run_task
    from tandem.graph.context import RunContext

    if plain:
        tandem.tools.data.compact_frame = lambda df, keep=(): df  # type: ignore[assignment]
        tandem.graph.persistence._mapped = lambda X, y: (X, y, None)  # type: ignore[assignment]

    rss_start = _rss()
    fits: list[tuple[float, float, str]] = []

    def timed(module: Any, name: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                fits.append((started, time.perf_counter(), name))

        setattr(module, name, wrapper)

    cached: list[float] = []  # when a candidate was scored from cached predictions, training nothing

    def noted(name: str) -> None:
        original = getattr(tandem.tools.training, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outputs = original(*args, **kwargs)
            if outputs is not None:
                cached.append(time.perf_counter())
            return outputs

        setattr(tandem.tools.training, name, wrapper)

    noted("_vote_from_cache")
    noted("_threshold_from_cache")
    timed(tandem.nodes.evaluator, "evaluate_spec")
    timed(tandem.nodes.executor, "dry_run")
    timed(tandem.nodes.deliver, "fit_final")
    timed(tandem.nodes.deliver, "score_holdout")
    events: list[tuple[str, float, str | None]] = []

    def on_update(node: str, update: dict[str, Any]) -> None:
        records = update.get("ledger") if node == "reward" else None
        status = records[-1].get("status") if isinstance(records, list) and records else None
        events.append((node, time.perf_counter(), status))

    t0 = time.perf_counter()
    summary = run_task(
        csv,
        target,
        run_id=f"speed-{Path(csv).stem}-{int(time.time())}",
        context=RunContext(
            runs_dir=str(WORK / "runs"), max_iters=max_iters, time_budget=time_budget, memory_limit=memory_limit
        ),
        on_update=on_update,
    )
    t_end = time.perf_counter()
    Path(out).write_text(
        json.dumps(
            {
                "t0": t0,
                "t_end": t_end,
                "events": events,
                "fits": fits,
                "cached": cached,
                "rss_start": rss_start,
                "iterations": summary.get("iterations"),
                "stop_reason": summary.get("stop_reason"),
                "seconds_spent": summary.get("seconds_spent"),
                "primary_metric": summary["task"]["primary_metric"],
                "holdout": summary["best"]["holdout"],
                "n_rows": summary["task"]["n_rows"],
            }
        )
    )


def child_profile(csv: str, target: str, out: str) -> None:
    """Read a CSV and profile it, timing each part; report the DataFrame's in-memory size."""
    from tandem.tools.data import read_table
    from tandem.tools.profile import profile_dataset

    t = time.perf_counter()
    frame = read_table(csv)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    profile = profile_dataset(frame, target, "binary")
    profile_s = time.perf_counter() - t
    Path(out).write_text(
        json.dumps(
            {
                "rows": len(frame),
                "columns": frame.shape[1],
                "read_seconds": read_s,
                "profile_seconds": profile_s,
                "frame_bytes": int(frame.memory_usage(deep=True).sum()),
                "frame_bytes_default": default_read_bytes(frame),
                "fold_task_bytes": mapped_fold_task_bytes(frame.drop(columns=[target])),
                "fold_task_bytes_default": default_fold_task_bytes(frame.drop(columns=[target])),
                "string_column_bytes": int(frame.select_dtypes(exclude="number").memory_usage(deep=True).sum()),
                "warnings": list(profile.warnings),
            }
        )
    )


class _LokyLikePickler(pickle.Pickler):
    """Pickles as joblib's loky backend sends a task's arguments: an array backed by a
    memory-mapped file, and any other numeric array above `max_nbytes` (1 MB by default),
    travels as the path of a mapped file, wherever it sits in the object (a DataFrame's blocks,
    a categorical's codes); everything else is copied."""

    def __init__(self, file: IO[bytes], protocol: int, *, all_arrays: bool = False) -> None:
        super().__init__(file, protocol=protocol)
        self.all_arrays = all_arrays

    def reducer_override(self, obj: Any) -> Any:
        shared = self.all_arrays or obj.nbytes > 1e6 or _backed_by_file(obj) if isinstance(obj, np.ndarray) else False
        if isinstance(obj, np.ndarray) and not obj.dtype.hasobject and shared:
            return (str, ("/dev/shm/joblib_memmapping_folder_0000/" + "0" * 32 + ".pkl",))
        return NotImplemented


def _backed_by_file(array: np.ndarray) -> bool:
    base: Any = array
    while base is not None:
        if isinstance(base, np.memmap):
            return True
        base = getattr(base, "base", None)
    return False


def fold_task_bytes(X: Any) -> int:
    """Bytes one fold task copies into a worker (the rest it maps from the shared file)."""
    buffer = io.BytesIO()
    _LokyLikePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(X)
    return buffer.tell()


def mapped_fold_task_bytes(X: pd.DataFrame) -> int:
    """`fold_task_bytes` of the development frame as a run hands it to its folds: mapped from a
    file (graph/persistence.py: dev_data), so every numeric array, small ones too, travels as a
    path. Counted on the frame in memory, as if mapped, so measuring it maps nothing (which
    would add to the peak this part measures)."""
    buffer = io.BytesIO()
    _LokyLikePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL, all_arrays=True).dump(X)
    return buffer.tell()


def default_fold_task_bytes(X: pd.DataFrame) -> int:
    """`fold_task_bytes` of the frame as pandas reads it by default, column by column (so this
    measurement does not hold a second copy of the data; per column, integer blocks that the
    whole frame would memory-map are counted as copied: an upper bound by a few MB)."""
    from tandem.tools.data import logical_dtype

    return sum(fold_task_bytes(X[name].astype(logical_dtype(X[name]))) for name in X.columns)


def default_read_bytes(frame: pd.DataFrame) -> int:
    """Bytes the frame would take as pandas reads it by default (strings as `str`, integers as
    int64), measured one column at a time: the denominator the speed goals used before
    `read_table` held columns compactly (tools/data.py: compact_frame)."""
    from tandem.tools.data import logical_dtype

    total = int(frame.index.memory_usage(deep=True))
    for name in frame.columns:
        col = frame[name]
        total += int(col.astype(logical_dtype(col)).memory_usage(deep=True, index=False))
    return total


# ------------------------------------------------------------------------------------------
# The parent: launch, sample memory, analyse
# ------------------------------------------------------------------------------------------


def _tree_rss(pid: int) -> tuple[int, int, int]:
    """(RSS of the process, its PSS, memory of the process and all its descendants).

    The tree's memory is the sum of proportional set sizes (PSS: private pages plus each shared
    page divided by the processes sharing it). Summing RSS instead would count the arrays joblib
    memory-maps into every worker once per worker. Without PSS (not Linux), RSS is summed.
    """
    import psutil

    def pss(proc: psutil.Process) -> int:
        try:
            return int(proc.memory_full_info().pss)
        except (AttributeError, psutil.AccessDenied):
            return int(proc.memory_info().rss)

    try:
        proc = psutil.Process(pid)
        own = int(proc.memory_info().rss)
        own_pss = total = pss(proc)
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a worker may exit between listing and reading
                total += pss(child)
        return own, own_pss, total
    except psutil.Error:
        return 0, 0, 0


def measured(mode: str, *args: str) -> dict[str, Any]:
    """Run `speed.py <mode> args... --out F` in a child; return its JSON plus peak memory and wall time."""
    out = WORK / f"child-{mode}-{os.getpid()}-{time.time_ns()}.json"
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, mode, *args, "--out", str(out)], cwd=ROOT)
    peak_own = peak_tree = main_at_peak = 0
    peak_at = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_own, peak_tree, peak_at, main_at_peak
        while not stop.is_set():
            own, own_pss, tree = _tree_rss(proc.pid)
            if tree > peak_tree:
                peak_tree, peak_at, main_at_peak = tree, time.perf_counter(), own_pss
            peak_own = max(peak_own, own)
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    stop.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"child {mode} {args} failed with exit code {code}")
    result = json.loads(out.read_text())
    out.unlink()
    result.update(
        wall_seconds=time.perf_counter() - started,
        peak_rss=peak_own,
        peak_rss_tree=peak_tree,
        peak_at=peak_at,
        main_pss_at_peak=main_at_peak,  # the rest of the peak is the joblib workers
    )
    return result


def _overlap(a: float, b: float, fits: list[list[Any]]) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for start, end, _ in fits)


def analyse_run(run: dict[str, Any]) -> dict[str, Any]:
    """Iterations (reward to reward), their fitting time, the environment's overhead, the memory peak's phase.

    An iteration's status is its experiment's (ok, failed, timeout, invalid…); "trained" iterations
    are those whose candidate was trained and cross-validated to the end, the typical cost of one
    experiment (a soft vote or a tuned threshold scored from cached predictions trains nothing, so
    it is an iteration but not a trained one).
    """
    events = [(e[0], e[1], e[2] if len(e) > 2 else None) for e in run["events"]]
    fits = run["fits"]
    setup_end = next(t for node, t, _ in events if node == "setup")
    rewards = [(t, status) for node, t, status in events if node == "reward"]
    iterations = []
    previous = setup_end
    for end, status in rewards:
        fit = _overlap(previous, end, fits)
        from_cache = any(previous <= t <= end for t in run.get("cached", []))
        iterations.append(
            {
                "seconds": end - previous,
                "fit_seconds": fit,
                "overhead_seconds": end - previous - fit,
                "status": status,
                "from_cache": from_cache,
            }
        )
        previous = end
    deliver_end = next((t for node, t, _ in events if node == "deliver"), run["t_end"])
    total_fit = _overlap(run["t0"], run["t_end"], fits)
    seconds = [i["seconds"] for i in iterations]
    overheads = [i["overhead_seconds"] for i in iterations]
    trained = [i["seconds"] for i in iterations if i["status"] in (None, "ok") and not i["from_cache"]]
    peak_at = run.get("peak_at")
    peak_phase = None
    if peak_at:
        peak_phase = next((node for node, t, _ in events if t >= peak_at), "after delivery")
    return {
        "iterations": iterations,
        "n_iterations": len(iterations),
        "n_trained_iterations": len(trained),
        "median_iteration_seconds": statistics.median(seconds) if seconds else None,
        "median_trained_iteration_seconds": statistics.median(trained) if trained else None,
        "mean_iteration_seconds": statistics.fmean(seconds) if seconds else None,
        "median_overhead_seconds": statistics.median(overheads) if overheads else None,
        "overhead_share_of_iterations": sum(overheads) / sum(seconds) if seconds else None,
        "setup_seconds": setup_end - run["t0"],
        "setup_fit_seconds": _overlap(run["t0"], setup_end, fits),
        "deliver_seconds": deliver_end - (rewards[-1][0] if rewards else setup_end),
        "run_seconds": run["t_end"] - run["t0"],
        "overhead_share_of_run": (run["t_end"] - run["t0"] - total_fit) / (run["t_end"] - run["t0"]),
        "peak_memory_phase": peak_phase,
    }


def _stamp() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_before": list(os.getloadavg()),
    }


def part_overhead(max_iters: int, time_budget: float) -> dict[str, Any]:
    stamp = _stamp()
    run = measured("_run", "--csv", str(ADULT), "--target", "income >50K", *_budget_args(max_iters, time_budget))
    return {
        **stamp,
        "dataset": "adult_income (32,561 rows x 14 columns)",
        "settings": {"max_iters": max_iters, "time_budget": time_budget},
        "stop_reason": run["stop_reason"],
        "load_average_after": list(os.getloadavg()),
        **analyse_run(run),
    }


def part_profile(n_rows: int) -> dict[str, Any]:
    stamp = _stamp()
    csv = generated_csv(n_rows)
    result = measured("_profile", "--csv", str(csv), "--target", "target")
    return {**stamp, "csv_bytes": csv.stat().st_size, "load_average_after": list(os.getloadavg()), **result}


def part_scaling(sizes: list[int], max_iters: int, time_budget: float) -> dict[str, Any]:
    previous = json.loads(RESULTS.read_text()).get("scaling", {}).get("runs", []) if RESULTS.exists() else []
    runs = [r for r in previous if r["rows"] not in sizes]  # a re-measured size replaces its old entry
    for n in sizes:
        stamp = _stamp()
        csv = generated_csv(n)
        sizes_read = measured("_profile", "--csv", str(csv), "--target", "target")
        run = measured("_run", "--csv", str(csv), "--target", "target", *_budget_args(max_iters, time_budget))
        sizes = {k: sizes_read[k] for k in ("frame_bytes", "frame_bytes_default", "fold_task_bytes")}
        runs.append(
            run_record(stamp, n, max_iters, time_budget, run)
            | sizes
            | {"fold_task_bytes_default": sizes_read["fold_task_bytes_default"]}
        )
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "iterations"}), flush=True)
    return {"runs": sorted(runs, key=lambda r: r["rows"])}


def part_plain(n: int, max_iters: int, time_budget: float) -> dict[str, Any]:
    """The scaling run of `n` rows on the same code with compact dtypes and the mapped
    development frame switched off: today's before, measured the same way."""
    stamp = _stamp()
    csv = generated_csv(n)
    run = measured("_run", "--csv", str(csv), "--target", "target", "--plain", *_budget_args(max_iters, time_budget))
    return run_record(stamp, n, max_iters, time_budget, run)


def part_bounded(n: int, max_iters: int, time_budget: float) -> dict[str, Any]:
    """The scaling run of `n` rows with a memory limit of 3x the frame as the issue measured it
    (strings as objects, before issue 10: `before_issue10` in speed.json), else as pandas reads it
    by default now: what a user on a small machine gets from `--memory-limit`."""
    stamp = _stamp()
    csv = generated_csv(n)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    old = [r for r in data.get("before_issue10", {}).get("scaling", {}).get("runs", []) if r["rows"] == n]
    frame = (
        old[0]["frame_bytes"]
        if old
        else measured("_profile", "--csv", str(csv), "--target", "target")["frame_bytes_default"]
    )
    limit = 3 * int(frame)
    args = ["--memory-limit", str(limit), *_budget_args(max_iters, time_budget)]
    run = measured("_run", "--csv", str(csv), "--target", "target", *args)
    return run_record(stamp, n, max_iters, time_budget, run) | {"memory_limit": limit}


def run_record(
    stamp: dict[str, Any], n: int, max_iters: int, time_budget: float, run: dict[str, Any]
) -> dict[str, Any]:
    """What speed.json keeps of one measured whole run (the scaling and the plain parts alike)."""
    kept = ("wall_seconds", "peak_rss", "peak_rss_tree", "main_pss_at_peak", "rss_start", "stop_reason", "holdout")
    return {
        **stamp,
        "rows": n,
        "settings": {"max_iters": max_iters, "time_budget": time_budget},
        **{key: run[key] for key in kept},
        "load_average_after": list(os.getloadavg()),
        **analyse_run(run),
    }


def _budget_args(max_iters: int, time_budget: float) -> list[str]:
    return ["--max-iters", str(max_iters), "--time-budget", str(time_budget)]


def save(part: str, value: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[part] = value
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"{part}: saved to {RESULTS}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "part",
        choices=["all", "overhead", "profile", "profile5m", "scaling", "plain1m", "bounded1m", "_run", "_profile"],
    )
    parser.add_argument("--memory-limit", type=int, help="(_run) the run's memory limit in bytes")
    parser.add_argument("--plain", action="store_true", help="(_run) without compact dtypes and the mapped frame")
    parser.add_argument("--csv")
    parser.add_argument("--target")
    parser.add_argument("--out")
    parser.add_argument("--max-iters", type=int, default=20)
    parser.add_argument("--time-budget", type=float, default=900.0)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--scaling-iters", type=int, default=8, help="iterations per scaling run")
    parser.add_argument("--scaling-budget", type=float, default=300.0, help="working seconds per scaling run")
    args = parser.parse_args()
    if args.part == "_run":
        child_run(
            args.csv,
            args.target,
            args.max_iters,
            args.time_budget,
            args.out,
            plain=args.plain,
            memory_limit=args.memory_limit,
        )
        return
    if args.part == "_profile":
        child_profile(args.csv, args.target, args.out)
        return
    if args.part in {"all", "overhead"}:
        save("overhead", part_overhead(args.max_iters, args.time_budget))
    if args.part in {"all", "profile"}:
        save("profile_1m", part_profile(1_000_000))
    if args.part in {"all", "profile5m"}:
        save("profile_5m", part_profile(5_000_000))
    if args.part in {"all", "scaling"}:
        sizes = [int(s) for s in args.sizes.split(",")]
        save("scaling", part_scaling(sizes, args.scaling_iters, args.scaling_budget))
    if args.part == "plain1m":  # not in "all": the A/B of issue 10's memory work, on request
        save("plain_1m", part_plain(1_000_000, args.scaling_iters, args.scaling_budget))
    if args.part in {"all", "bounded1m"}:
        save("bounded_1m", part_bounded(1_000_000, args.scaling_iters, args.scaling_budget))


if __name__ == "__main__":
    main()
