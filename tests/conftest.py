"""Shared fixtures: the bundled data, a private runs folder, and small CSVs made on the fly."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C works in the tests however the suite was started.

    A shell starts a background job (`make test &`, `nohup`) with SIGINT ignored, and an ignored
    signal stays ignored in every process it starts: the tests that press Ctrl-C on a run, a
    training or a watching league then waited forever (a league-watch test hung under
    `fresh-clone-check` for 17 minutes). A handled signal is reset to its default in the processes
    this one starts, so restoring Python's handler here (in every xdist worker too) restores it there.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs"
    monkeypatch.setenv("TANDEM_RUNS_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def titanic() -> Path:
    return DATA / "titanic.csv"


@pytest.fixture(scope="session")
def penguins() -> Path:
    return DATA / "penguins.csv"


def synthetic_frame(n: int = 300, seed: int = 0, task: str = "binary") -> pd.DataFrame:
    """A small, learnable table with numeric, categorical and missing values."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    signal = 1.5 * x1 - x2 + (colour == "red")
    frame = pd.DataFrame({"x 1": x1, "x2 (cm)": x2, "colour": colour})
    frame.loc[rng.choice(n, size=n // 10, replace=False), "x2 (cm)"] = np.nan
    if task == "regression":
        frame["price $"] = 100 + 10 * signal + rng.normal(size=n)
    else:
        frame["label"] = np.where(signal + rng.normal(scale=0.5, size=n) > 0, "yes", "no")
    return frame
