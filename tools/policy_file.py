"""The policy file: a learned policy as versioned JSON, with what it was trained on and a hash.

    {"format": "tandem-policy", "version": 1,
     "role": "scientist", "method": "linear-thompson",
     "features": [...names of the context features...],
     "mode": "greedy",                     # how a run plays it: greedy = frozen and deterministic
     "bandit": {...tools.bandit.LinearBandit.to_dict()...},
     "executor": {...optional: the Executor's open-choice bandit...},
     "provenance": {"tasks": [...], "episodes": N, "seeds": [...], "runs": [...],
                    "tandem_version": "...", "normalisation": "...", "created": "..."},
     "hash": "sha256 of everything above, as canonical JSON"}

The hash names the policy: a run records it (run.json, summary.json) and refuses to go on with a
file whose content changed since it started, so a resumed run plays the same policy. Two policies
have names: `playbook` is no file (the hand-set preferences of the heuristic Scientist, the
default), and `learned` is the file the package ships (`policies/scientist.json`, written by
`tandem train`; docs/policies/README.md says how and on what, docs/learning-eval.md how it fares).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tandem.tools.errors import InputError

FORMAT = "tandem-policy"
VERSION = 1
PLAYBOOK = "playbook"
"""The named policy that is no file: the playbook's fixed preferences."""
LEARNED = "learned"
"""The named policy that is the shipped file, `SHIPPED_POLICY`."""
SHIPPED_POLICY = Path(__file__).parent / "policies" / "scientist.json"


def policy_path(spec: str) -> str:
    """Where a `--policy` value's file is: the shipped file for `learned`, else the path made absolute
    (so a run started in one folder and resumed from another reads the same file)."""
    if spec == LEARNED:
        return str(SHIPPED_POLICY)
    return str(Path(spec).expanduser().resolve())


def content_hash(policy: dict[str, Any]) -> str:
    """SHA-256 of the policy without its `hash` key, as sorted compact JSON."""
    body = {k: v for k, v in policy.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def with_hash(policy: dict[str, Any]) -> dict[str, Any]:
    body = {**{k: v for k, v in policy.items() if k != "hash"}, "format": FORMAT, "version": VERSION}
    return {**body, "hash": content_hash(body)}


def write_policy(path: str | Path, policy: dict[str, Any]) -> dict[str, Any]:
    """Write atomically (a stopped trainer never leaves half a file); returns what was written.
    The temporary file goes when the write fails (a folder in the way, a full disk, a stop signal),
    so no hidden `.NAME.PID.tmp` is left beside the target."""
    stamped = with_hash(policy)
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(stamped, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return stamped


def read_policy(path: str | Path) -> dict[str, Any]:
    """Load and check a policy file; a missing, foreign, newer or altered file is one `InputError` line."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise InputError(f"no such policy file: {source} (or use --policy {PLAYBOOK} or --policy {LEARNED})")
    try:
        data = json.loads(source.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[…" nested deep
        raise InputError(f"policy file {source}: not JSON ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f'policy file {source}: not a tandem policy (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise InputError(f"policy file {source}: version {data.get('version')!r}, this tandem reads version {VERSION}")
    if data.get("hash") != content_hash(data):
        raise InputError(f"policy file {source}: its hash does not match its content (edited by hand?)")
    # the hash says the file is whole, not that it came from tandem: anyone can recompute it
    import numpy as np  # not on the CLI's start-up path

    from tandem.tools.bandit import LinearBandit  # numpy: not on the CLI's start-up path

    if not isinstance(data.get("provenance", {}), dict) or not isinstance(data.get("executor", {}), dict):
        raise InputError(f"policy file {source}: 'provenance' and 'executor' must be objects")
    parts = {"bandit": data.get("bandit"), "executor.bandit": (data.get("executor") or {}).get("bandit")}
    for name, part in parts.items():
        if part is not None:
            try:
                LinearBandit.from_dict(part)
            except (ValueError, np.linalg.LinAlgError) as exc:
                raise InputError(f"policy file {source}: {name}: {exc}") from None
    return data


def _no_constant(name: str) -> Any:
    """Python's JSON reads NaN and Infinity; a policy's statistics are finite or not a policy."""
    raise ValueError(f"{name} is not a number a policy holds")


def policy_hash(spec: str) -> str | None:
    """The hash a run records for `--policy SPEC`: None for `playbook`, else the file's checked hash."""
    if spec == PLAYBOOK:
        return None
    return str(read_policy(spec)["hash"])
