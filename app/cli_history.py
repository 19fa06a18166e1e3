"""`tandem history`, `tandem fork` and `tandem graph`, and the options every run command shares.

History and fork are the command-line side of LangGraph's checkpointer: list a run's
checkpoints, and continue any of them in a new run folder (the original is never written to).
`tandem graph` prints the graph as Mermaid and writes a PNG, offline: with pygraphviz (which
bundles Graphviz) through LangGraph's `draw_png`, else drawn with matplotlib from the same
nodes and edges (`draw_mermaid_png` would call a web service).
"""

from __future__ import annotations

import argparse
import json
from collections import deque
from pathlib import Path
from typing import Any

from tandem.cli_options import (
    RUNS_DIR_HELP,
    add_checkpoint_db_option,
    add_running_options,
    context_changes,
    stored_context,
)
from tandem.run_listing import tandem_command


def add_history_commands(sub: Any) -> None:
    history = sub.add_parser("history", help="list a run's checkpoints (step, node, incumbent, time)")
    history.add_argument("run_id")
    history.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    history.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_checkpoint_db_option(history, "history")

    fork = sub.add_parser("fork", help="continue a run from one of its checkpoints in a new run")
    fork.add_argument("run_id")
    fork.add_argument("--from", dest="checkpoint", required=True, help="a step number or checkpoint id (see history)")
    fork.add_argument("--run-id", dest="new_run_id", help="name of the new run (default RUN_ID-forkSTEP)")
    fork.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    add_running_options(fork, "fork")

    draw = sub.add_parser("graph", help="print the graph as Mermaid and write it as a PNG")
    draw.add_argument("-o", "--output", default="tandem-graph.png", help="PNG to write (default tandem-graph.png)")


def cmd_history(args: argparse.Namespace) -> int:
    from tandem.api import run_history  # LangGraph and scikit-learn, only where used: CLI start-up time

    rows = run_history(args.run_id, args.runs_dir, getattr(args, "checkpoint_db", None))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'step':>4}  {'node':28} {'next':10} {'exp':>3}  {'incumbent':18} {'time':19}  checkpoint")
    for r in rows:
        score = f"#{r['incumbent']} {r['incumbent_score']:.4f}" if r["incumbent_score"] is not None else "–"
        pause = " (paused)" if r["paused"] else ""
        print(
            f"{r['step']:>4}  {r['node'][:28]:28} {','.join(r['next']) or 'end':10} {r['experiments']:>3}  "
            f"{score:18} {r['time'][:19].replace('T', ' '):19}  {r['checkpoint_id']}{pause}"
        )
    metric = next((r["metric"] for r in rows if r["metric"]), None)
    if metric:
        fork = tandem_command("fork", args.run_id, args.runs_dir, "--from", "STEP")
        print(f"(incumbent: experiment and its CV {metric}; fork with: {fork})")
    return 0


def cmd_fork(args: argparse.Namespace) -> int:
    from tandem.api import fork_run  # LangGraph and scikit-learn, only where used: CLI start-up time
    from tandem.live import make_display  # rich and the graph's messages, likewise
    from tandem.run_cluster import fold_fits_on  # joblib, and Dask (an optional extra) with --cluster: likewise
    from tandem.tracking import track_run  # MLflow, an optional extra, only with --mlflow: likewise

    overrides = context_changes(args)
    source = args.run_id
    context = stored_context(source, args.runs_dir, overrides)
    args.run_id = args.new_run_id or f"{source}-fork{_step_of(source, args.checkpoint, args.runs_dir)}"  # for Ctrl-C
    with (
        fold_fits_on(args.cluster),
        track_run(args.mlflow, args.run_id, args.runs_dir, new=True) as tracker,
        make_display(context, args.run_id, plain=args.plain) as display,
    ):
        summary = fork_run(
            source,
            args.checkpoint,
            new_run_id=args.run_id,
            runs_dir=args.runs_dir,
            on_update=tracker.watch(display.on_update),
            on_event=display.event_handler,
            on_approval=display.on_approval,
            checkpoint_db=args.checkpoint_db,
            **overrides,
        )
    return 0 if summary.get("status") == "delivered" else 1


def _step_of(run_id: str, checkpoint: str, runs_dir: str | None) -> str:
    """The step number of a checkpoint given by step or by id (the new run's default name uses it)."""
    from tandem.api import run_history  # LangGraph and scikit-learn, only where used: CLI start-up time

    if checkpoint.strip().isdigit():
        return checkpoint.strip()
    steps = [r["step"] for r in run_history(run_id, runs_dir) if r["checkpoint_id"].startswith(checkpoint.strip())]
    return str(steps[0]) if len(steps) == 1 else checkpoint  # fork_run explains a bad or ambiguous id


def cmd_graph(args: argparse.Namespace) -> int:
    from tandem.graph.assembly import graph  # the compiled graph (LangGraph, the nodes): CLI start-up time

    drawable = graph.get_graph()
    print(drawable.draw_mermaid())
    path = Path(args.output)
    write_png(drawable, path)
    print(f"wrote {path}")
    return 0


def write_png(drawable: Any, path: Path) -> None:
    """The graph as a PNG: Graphviz's layout when pygraphviz is installed, else matplotlib's drawing."""
    try:
        import pygraphviz  # noqa: F401
    except ImportError:
        draw_with_matplotlib(drawable, path)
    else:
        path.write_bytes(drawable.draw_png())


def draw_with_matplotlib(drawable: Any, path: Path) -> None:
    """A layered drawing: rank = distance from the start; dashed arrows are conditional edges."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    edges = [(e.source, e.target, e.conditional) for e in drawable.edges]
    rank = {"__start__": 0}
    queue = deque(["__start__"])
    while queue:
        node = queue.popleft()
        for source, target, _ in edges:
            if source == node and target not in rank:
                rank[target] = rank[node] + 1
                queue.append(target)
    rows: dict[int, list[str]] = {}
    for node in drawable.nodes:
        rows.setdefault(rank.get(node, max(rank.values()) + 1), []).append(node)
    where = {n: (i - (len(ns) - 1) / 2, -r) for r, ns in rows.items() for i, n in enumerate(ns)}
    fig, ax = plt.subplots(figsize=(7, 1.1 * len(rows) + 1))
    for source, target, conditional in edges:
        if source == target:
            continue
        (x0, y0), (x1, y1) = where[source], where[target]
        bend = 0.35 if y1 >= y0 else 0.0
        ax.add_patch(
            FancyArrowPatch(
                (x0, y0),
                (x1, y1),
                arrowstyle="-|>",
                mutation_scale=14,
                shrinkA=16,
                shrinkB=16,
                linestyle="--" if conditional else "-",
                color="tab:gray" if conditional else "black",
                connectionstyle=f"arc3,rad={bend}",
            )
        )
    for node, (x, y) in where.items():
        label = {"__start__": "start", "__end__": "end"}.get(node, node)
        ax.text(x, y, label, ha="center", va="center", fontsize=11, bbox={"boxstyle": "round", "fc": "#f2f0ff"})
    xs = [x for x, _ in where.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(-len(rows), 0.7)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


COMMANDS = {"history": cmd_history, "fork": cmd_fork, "graph": cmd_graph}
