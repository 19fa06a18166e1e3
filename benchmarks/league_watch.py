"""A league that stays open: policy files dropped in a folder join it, and its ladder as a web page.

Why: Hugging Face's "AI vs AI" ranks every model pushed to the Hub without anyone registering it.
Here the Hub is a folder: `tandem league --players-dir DIR` looks in DIR before every round, and
each policy file it finds (`*.json` from `tandem train` or `tandem learn`) plays as
`learned:<file name>@<hash>`, tandem with that Scientist policy. The hash is in the name because
results are reused by player name: a file overwritten by a newer policy is a new player, starting
at the starting rating like any newcomer (ratings are the replay of the match history, so a name
never seen before starts there), never the heir of the old file's stored games. A file that is
not a readable policy is reported in one line, once per content, and skipped; the league goes on.

The page (`league.html` beside `results.sqlite`) is written after every match, self-contained:
the standings table and each player's rating after every match as inline SVG lines, no script.
"""

from __future__ import annotations

import hashlib
import html
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.benchmarks.league import START_RATING, Standing, standings
from tandem.benchmarks.players import Player, PlayResult, TandemPlayer, pinned
from tandem.benchmarks.results_store import ResultsStore
from tandem.benchmarks.tasks import TaskData
from tandem.nodes.agents import playable
from tandem.run_listing import shown
from tandem.tools.data import InputError
from tandem.tools.policy_file import read_policy

PAGE_NAME = "league.html"


@dataclass(frozen=True)
class DroppedPolicy:
    """tandem whose Scientist plays a policy file found in the players folder."""

    file: Path
    digest: str
    """The policy's own content hash (tools/policy_file.py), checked when the file was read."""
    options: tuple[tuple[str, Any], ...] = ()
    """Run-context options shared with the league's tandem player (e.g. max_iters), so that a
    dropped policy plays the same game as the tandem it is measured against."""

    @property
    def name(self) -> str:
        return f"learned:{self.file.name}@{self.digest[:8]}" + "".join(f":{k}={v}" for k, v in self.options)

    def _tandem(self) -> TandemPlayer:
        return TandemPlayer(pinned((*self.options, ("policy", str(self.file))), self.digest))

    def check(self) -> None:
        self._tandem().check()

    def withdrawn(self) -> str | None:
        return self._tandem().withdrawn()

    def play(self, data: TaskData, *, budget: float, seed: int, workdir: Path) -> PlayResult:
        return self._tandem().play(data, budget=budget, seed=seed, workdir=workdir)


def load_dropped(path: Path, options: tuple[tuple[str, Any], ...] = ()) -> DroppedPolicy:
    """The player for one policy file; an unreadable, foreign or untrainable file is one InputError line."""
    policy = read_policy(path)
    playable(policy)  # the checks a run would make: role, features and their statistics, arms, mode, seed
    return DroppedPolicy(path.resolve(), str(policy["hash"]), options)


def shared_options(players: Sequence[Player]) -> tuple[tuple[str, Any], ...]:
    """The first tandem player's options but its policy: what dropped policies play with."""
    for player in players:
        if isinstance(player, TandemPlayer):
            return tuple((k, v) for k, v in player.options if k != "policy")
    return ()


@dataclass
class PlayersFolder:
    """The league's roster before each round: the fixed players plus the policy files now in `folder`.

    A file removed from the folder leaves the roster (its matches stay in the history). `say`
    gets one line per new joiner and per bad file; a bad file is named again only if its content
    changes.
    """

    folder: Path
    fixed: Sequence[Player]
    say: Callable[[str], None] = print
    _seen: dict[Path, str] = field(default_factory=dict)
    """Each file's last seen content digest, so a file is read and reported once per version."""
    _players: dict[Path, DroppedPolicy] = field(default_factory=dict)

    def roster(self) -> list[Player]:
        if not self.folder.is_dir():
            raise InputError(f"--players-dir {self.folder}: no such folder")
        present = sorted(p for p in self.folder.glob("*.json") if not p.name.startswith("."))
        for path in present:
            if problem := _unreadable_policy_file(path):
                if self._seen.get(path) != problem:  # said once, and again only if it changes
                    self._seen[path] = problem
                    self._players.pop(path, None)
                    self.say(f"players-dir: skipped {shown(path.name)}: {problem}")
                continue
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:  # removed or being replaced between the listing and the read
                continue
            if self._seen.get(path) == digest:
                continue
            self._seen[path] = digest
            self._players.pop(path, None)
            try:
                player = load_dropped(path, shared_options(self.fixed))
            except InputError as exc:
                self.say(f"players-dir: skipped {path.name}: {exc}")
                continue
            self._players[path] = player
            self.say(f"players-dir: {player.name} joins at {START_RATING:.0f}")
        for gone in set(self._seen) - set(present):  # removed: it leaves, and is read afresh if it comes back
            del self._seen[gone]
            self._players.pop(gone, None)
        names = {p.name for p in self.fixed}
        return [*self.fixed, *(p for p in self._players.values() if p.name not in names)]


#: A player's name is printed and stored: a file name of letters, digits, '.', '_' and '-' only.
POLICY_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\.json")
#: Policy files from `tandem train` are kilobytes; a bigger file is not read (it would be read whole).
MAX_POLICY_BYTES = 16 << 20


def _unreadable_policy_file(path: Path) -> str | None:
    """Why a file of the players folder is not read as a policy (its name, kind or size), or None."""
    if not POLICY_FILE_NAME.fullmatch(path.name):
        return "a player's name is the file's name: use letters, digits, '.', '_' and '-'"
    try:
        if not path.is_file():
            return "not a regular file"
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size > MAX_POLICY_BYTES:
        return f"{size / 2**20:.0f} MB is no policy file from tandem train (they are kilobytes)"
    return None


# Colour-blind-safe palette (Okabe-Ito), cycled.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def rating_svg(table: Sequence[Standing], width: int = 720, height: int = 300) -> str:
    """Each player's rating after each match it played, as step lines over the match number."""
    pad_left, pad_right, pad_top, pad_bottom = 52, 12, 12, 30
    last = max((mid for s in table for mid, _ in s.history), default=1)
    values = [r for s in table for _, r in s.history] + [START_RATING]
    low, high = min(values) - 10, max(values) + 10

    def x(mid: float) -> float:
        return pad_left + (width - pad_left - pad_right) * mid / max(last, 1)

    def y(rating: float) -> float:
        return pad_top + (height - pad_top - pad_bottom) * (high - rating) / (high - low)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="Elo rating after each match">',
        f'<line x1="{pad_left}" y1="{y(START_RATING):.1f}" x2="{width - pad_right}" y2="{y(START_RATING):.1f}" '
        'stroke="#999" stroke-dasharray="3 3"/>',
    ]
    for tick in (low + 10, START_RATING, high - 10):
        parts.append(
            f'<text x="{pad_left - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end">{tick:.0f}</text>'
        )
    parts.append(
        f'<text x="{(width + pad_left) / 2:.0f}" y="{height - 8}" font-size="11" text-anchor="middle">'
        f"match number (1 to {last})</text>"
    )
    for i, s in enumerate(table):
        points = [(0.0, START_RATING)]
        for mid, rating in s.history:
            points += [(float(mid), points[-1][1]), (float(mid), rating)]  # a step: flat until the match
        points.append((float(last), points[-1][1]))
        path = " ".join(f"{x(m):.1f},{y(r):.1f}" for m, r in points)
        colour = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}">'
            f"<title>{html.escape(s.player)}: {s.rating:.1f}</title></polyline>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def leaderboard_html(table: Sequence[Standing], title: str = "tandem league") -> str:
    """A self-contained page: the standings (with each player's line colour) and the rating plot."""
    rows = []
    for rank, s in enumerate(table, 1):
        colour = PALETTE[(rank - 1) % len(PALETTE)]
        rows.append(
            f'<tr><td>{rank}</td><td><span style="color:{colour}">&#9632;</span> {html.escape(s.player)}</td>'
            f"<td>{s.rating:.1f}</td><td>{s.games}</td><td>{s.wins}</td><td>{s.draws}</td><td>{s.losses}</td>"
            f"<td>{s.win_rate:.0%}</td></tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="8">no matches yet</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:760px}}
table{{border-collapse:collapse}}td,th{{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}}
td:nth-child(2),th:nth-child(2){{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Elo ratings replayed from every match in the results store; every player starts at {START_RATING:.0f}.</p>
<table><thead><tr><th>rank</th><th>player</th><th>Elo</th><th>games</th><th>wins</th><th>draws</th>
<th>losses</th><th>win rate</th></tr></thead>
<tbody>
{body}
</tbody></table>
<h2>Rating history</h2>
{rating_svg(table)}
</body></html>
"""


def write_leaderboard_html(store: ResultsStore, path: str | Path | None = None) -> Path:
    """Write the store's ladder as `league.html` (or `path`), atomically so a reader never sees half."""
    out = Path(path) if path is not None else store.dir / PAGE_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(leaderboard_html(standings(store)), encoding="utf-8")
    tmp.replace(out)
    return out


@dataclass
class Rounds:
    """What `run_league` asks before each round (its `roster`): the players now, and in watch mode
    a pause of `pause` seconds between rounds, so a league whose games are all stored already
    does not spin through rounds (a round of stored games takes milliseconds)."""

    fixed: Sequence[Player]
    folder: PlayersFolder | None = None
    pause: float = 0.0
    _asked: int = 0

    def __call__(self) -> list[Player]:
        if self._asked and self.pause > 0:
            time.sleep(self.pause)
        self._asked += 1
        return self.folder.roster() if self.folder is not None else list(self.fixed)


def league_rounds(
    fixed: Sequence[Player], folder: str | Path | None, pause: float, say: Callable[[str], None] = print
) -> Rounds | None:
    """The roster for `tandem league --players-dir DIR [--watch]`; None when neither is asked for."""
    if folder is None and pause <= 0:
        return None
    found = PlayersFolder(Path(folder).expanduser(), fixed, say) if folder is not None else None
    return Rounds(fixed, found, pause)
