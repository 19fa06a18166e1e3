"""`tandem train` and `tandem learn`: the Scientist's policy learnt from rewards (docs/learning.md).

Kept apart from `tandem.cli` so the learning commands have one home; `tandem.cli` registers them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from tandem.cli_options import RUNS_DIR_HELP, number
from tandem.tools.dask_client import client_for

if TYPE_CHECKING:
    from tandem.benchmarks.learning import EpisodeResult

EXIT_WORKER_KILLED = 1


TIME_PRICE: dict[str, Any] = {
    "type": number(float, at_least=0, at_most=5),
    "default": None,
    "help": "what an experiment's seconds cost in the learning signal, per iteration's share of the run's time "
    "budget, in baseline fold spreads (a new policy file only; default 0: time is free)",
}


def add_learning_commands(sub: Any) -> None:
    trainer = sub.add_parser("train", help="train the Scientist's move policy on the training pool")
    trainer.add_argument("--tasks", help="comma-separated tasks of the training pool (default: all of it)")
    trainer.add_argument("--pool", help="a training pool file (default: the one tandem ships)")
    trainer.add_argument(
        "--episodes",
        type=number(int, at_least=1),
        required=True,
        help="episodes in total (a resumed file counts its own)",
    )
    trainer.add_argument("--out", required=True, help="the policy file to write (and to resume from if it exists)")
    trainer.add_argument(
        "--workers", type=number(int, at_least=1), default=2, help="episodes played in parallel processes"
    )
    trainer.add_argument("--max-iters", type=number(int, at_least=1), default=8, help="experiments per episode")
    trainer.add_argument(
        "--time-budget", type=number(float, above=0), default=120.0, help="working seconds per episode"
    )
    trainer.add_argument(
        "--seed", type=number(int, at_least=0), default=0, help="seeds the task order, the splits and the exploration"
    )
    trainer.add_argument("--keep-runs", action="store_true", help="keep the episodes' run folders")
    trainer.add_argument("--time-price", **TIME_PRICE)
    trainer.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="play each batch's episodes as tasks on a Dask cluster: tcp://HOST:8786 or local[:N] "
        "(default $TANDEM_CLUSTER, else local processes)",
    )

    learner = sub.add_parser("learn", help="update a policy from the ledgers of earlier runs (off-policy)")
    learner.add_argument("runs", nargs="+", help="run ids (under --runs-dir) or run folders")
    learner.add_argument("--out", required=True, help="the policy file to write")
    learner.add_argument(
        "--policy",
        help="the policy to start from: a file, 'learned', or 'playbook' (untrained) (default: --out if it exists, "
        "else untrained)",
    )
    learner.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    learner.add_argument("--time-price", **TIME_PRICE)


def cmd_train(args: argparse.Namespace) -> int:
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    from tandem.benchmarks.learning import DEFAULT_POOL, select_pool, train  # the whole stack: CLI start-up time

    tasks = select_pool(args.tasks, args.pool or DEFAULT_POOL)
    print(f"training on {len(tasks)} task(s): {', '.join(t.name for t in tasks)}; writing {args.out}")

    def progress(result: EpisodeResult, policy: dict[str, Any], running_mean: float) -> None:
        provenance = policy["provenance"]
        done = provenance.get("episodes", 0) + len(provenance.get("failed_episodes", []))
        width = 24
        filled = int(width * min(done / args.episodes, 1.0))
        bar = "#" * filled + "-" * (width - filled)
        if result.error:
            print(f"[{bar}] {done}/{args.episodes} {result.task:<18} seed {result.seed}: FAILED, {result.error}")
            return
        episode_mean = sum(r for *_, r in result.steps) / max(len(result.steps), 1)
        print(
            f"[{bar}] {done}/{args.episodes} {result.task:<18} seed {result.seed}: "
            f"{len(result.steps)} moves, mean reward {episode_mean:+.3f}; running mean {running_mean:+.3f}",
            flush=True,
        )

    try:  # a stop signal: `tandem.cli.main` says what is kept (`kept_by_training`)
        with client_for(args.cluster) as client:
            policy = train(
                tasks,
                episodes=args.episodes,
                out=args.out,
                workers=args.workers,
                max_iters=args.max_iters,
                time_budget=args.time_budget,
                seed=args.seed,
                keep_runs=args.keep_runs,
                on_episode=progress,
                cluster=client,
                time_price=args.time_price,
            )
    except TerminatedWorkerError:  # the operating system's out-of-memory killer, or someone's kill
        print(
            f"\ntandem: an episode's worker process was killed (out of memory, or by a signal); {args.out} holds "
            "every finished episode. Continue with the same command (fewer --workers if memory ran out).",
            file=sys.stderr,
        )
        return EXIT_WORKER_KILLED
    provenance = policy["provenance"]
    lost = len(provenance.get("failed_episodes", []))
    print(
        f"wrote {args.out}: {provenance.get('episodes', 0)} episodes, {provenance.get('steps', 0)} moves"
        + (f" ({lost} failed episodes not learnt from)" if lost else "")
        + f", hash {policy['hash'][:12]}"
    )
    return 0


def kept_by_training(args: argparse.Namespace) -> str:
    """What a stopped `tandem train` keeps: every finished episode is in the policy file."""
    return f"{args.out} holds every finished episode. Continue with the same command."


def cmd_learn(args: argparse.Namespace) -> int:
    from tandem.benchmarks.learning import learn_from_runs  # the whole stack: CLI start-up time

    if args.runs_dir:
        os.environ["TANDEM_RUNS_DIR"] = args.runs_dir
    learnt = learn_from_runs(args.runs, out=args.out, start=args.policy, time_price=args.time_price)
    if learnt.skipped:
        left_out = ", ".join(f"{run} ({why})" for run, why in learnt.skipped)
        print(f"tandem: skipped {left_out}: a run's moves are learnt once", file=sys.stderr)
    policy = learnt.policy
    counted = f"learnt from {len(learnt.runs)} run(s), {policy['provenance'].get('steps', 0)} moves in all"
    print(f"wrote {args.out}: {counted}, hash {policy['hash'][:12]}")
    return 0


COMMANDS = {"train": cmd_train, "learn": cmd_learn}
