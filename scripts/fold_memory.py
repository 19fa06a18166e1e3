"""Where one fold's memory goes (issue 10): the allocations alive at a fold's high-water mark.

Why: the speed benchmark (`scripts/speed.py`) measures the peak of a whole run over all its
processes, which says how much memory a run needs but not what holds it. This script fits one
fold of one experiment of a finished run as a fold worker fits it (the run's own mapped
development part, `dev_data`, and `_fit_fold`) under memray's tracker, and groups what is
allocated at the fold's high-water mark by the call that allocated it. The mapped development
part is not an allocation of the fold: its pages are shared by the run's process and its
workers, and the page states its size apart.

    .venv/bin/pip install memray        # not a dependency of tandem: only this script uses it
    .venv/bin/python scripts/speed.py scaling --sizes 1000000     # a 1M-row run (re-measures speed.json's)
    .venv/bin/python scripts/fold_memory.py RUN_FOLDER --experiment 3 --out docs/fold-memory.md
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tandem.graph.persistence import RunFolder, data_path, dev_data, problem_of
from tandem.tools.data import sha256_file
from tandem.tools.spec import parse_spec
from tandem.tools.training import _fit_fold, fold_assignment

#: Packages whose frames name an allocation's site; frames of the interpreter and of joblib's
#: plumbing are skipped over to the nearest of these.
SITE_PACKAGES = ("tandem", "sklearn", "pandas", "numpy", "scipy", "lightgbm", "catboost", "xgboost")
#: Sites holding less than this share of the high-water mark are summed in one row.
SMALL_SHARE = 0.01


def _site(stack: list[tuple[str, str, int]]) -> tuple[str, str]:
    """(the innermost frame of a known package, the innermost tandem frame) of an allocation."""

    def named(frame: tuple[str, str, int]) -> str:
        function, file, line = frame
        parts = Path(file).parts
        package = next((i for i, p in enumerate(parts) if p in SITE_PACKAGES), None)
        where = "/".join(parts[package:]) if package is not None else Path(file).name
        return f"`{function}` ({where}:{line})"

    def in_package(frame: tuple[str, str, int], packages: tuple[str, ...]) -> bool:
        return any(p in packages for p in Path(frame[1]).parts)

    site = next((f for f in stack if in_package(f, SITE_PACKAGES)), stack[0] if stack else ("?", "?", 0))
    ours = next((f for f in stack if in_package(f, ("tandem",))), None)
    return named(site), named(ours) if ours is not None else ""


def measure(folder: Path, experiment: int, fold: int) -> dict[str, Any]:
    """Fit the fold under memray's tracker; return the high-water mark grouped by site."""
    import memray

    run = RunFolder(folder)
    task = json.loads(run.summary.read_text())["task"]
    task["csv_sha256"] = sha256_file(data_path(task, run))  # the summary leaves out the hash the data is checked by
    records = [json.loads(line) for line in run.experiments.read_text().splitlines() if line]
    record = next((r for r in records if r["id"] == experiment), None)
    if record is None or not record.get("spec"):
        raise SystemExit(f"fold_memory: {folder} has no experiment #{experiment} with a spec")
    spec = parse_spec(record["spec"])
    X, y, folds = dev_data(task, run)
    assignment = fold_assignment(np.atleast_2d(folds), 0)
    mapped = int(X.memory_usage(deep=True).sum() + y.memory_usage(deep=True))
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "fold.bin"
        started = time.perf_counter()
        with memray.Tracker(trace):
            scores = _fit_fold(spec, problem_of(task), X, y, assignment, fold)[0]
        seconds = time.perf_counter() - started
        reader = memray.FileReader(trace)
        by_site: dict[tuple[str, str], int] = defaultdict(int)
        for allocation in reader.get_high_watermark_allocation_records(merge_threads=True):
            by_site[_site(allocation.stack_trace(max_stacks=40))] += allocation.size
    return {
        "run": folder.name,
        "experiment": experiment,
        "move": record["move"],
        "family": record["spec"].get("model", {}).get("family", record["spec"].get("kind")),
        "fold": fold,
        "train_rows": int((assignment != fold).sum()),
        "columns": int(X.shape[1]),
        "mapped_bytes": mapped,
        "seconds": seconds,
        "scores": scores,
        "peak_bytes": sum(by_site.values()),
        "sites": sorted(((size, site, ours) for (site, ours), size in by_site.items()), reverse=True),
    }


def page(m: dict[str, Any], command: str) -> str:
    """The Markdown page of one measurement."""
    mb = 1e6
    peak = m["peak_bytes"]
    big = [s for s in m["sites"] if s[0] >= SMALL_SHARE * peak]
    rest = sum(s[0] for s in m["sites"] if s[0] < SMALL_SHARE * peak)
    lines = [
        "# Where one fold's memory goes",
        "",
        f"Generated by `{command}` ({datetime.now(UTC).date()}, {platform.machine()}, "
        f"Python {platform.python_version()}). Do not edit by hand.",
        "",
        f"Run `{m['run']}`, experiment #{m['experiment']} ({m['move']}, {m['family']}), fold {m['fold']}: "
        f"{m['train_rows']:,} training rows, {m['columns']} columns, fitted and scored in {m['seconds']:.1f} s "
        f"under memray's tracker (slower than untracked). The run's development part, mapped from a "
        f"file and shared with the run's process, is {m['mapped_bytes'] / mb:,.0f} MB and not counted below.",
        "",
        f"**High-water mark of the fold's own allocations: {peak / mb:,.0f} MB**, held as follows "
        f"(sites of at least {SMALL_SHARE:.0%} of it; *through* is the innermost tandem frame above the site).",
        "",
        "| MB | share | allocated in | through |",
        "|---|---|---|---|",
        *[f"| {size / mb:,.1f} | {size / peak:.1%} | {site} | {ours} |" for size, site, ours in big],
        f"| {rest / mb:,.1f} | {rest / peak:.1%} | {len(m['sites']) - len(big)} smaller sites | |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run's folder")
    parser.add_argument("--experiment", type=int, required=True, help="the ledger id of the experiment")
    parser.add_argument("--fold", type=int, default=0, help="the fold of the first repeat to fit (default 0)")
    parser.add_argument("--out", type=Path, help="the Markdown page to write (default: print it)")
    args = parser.parse_args()
    try:
        import memray  # noqa: F401
    except ImportError:
        raise SystemExit("fold_memory: memray is not installed: .venv/bin/pip install memray") from None
    if not (args.run / "summary.json").is_file():
        raise SystemExit(f"fold_memory: {args.run} is not a finished run's folder (no summary.json)")
    command = " ".join([".venv/bin/python scripts/fold_memory.py", *sys.argv[1:]])
    text = page(measure(args.run, args.experiment, args.fold), command)
    if args.out:
        args.out.write_text(text)
        print(f"fold_memory: wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
