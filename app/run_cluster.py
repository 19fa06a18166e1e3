"""A run's fold fits on a Dask cluster: `--cluster ADDRESS` (or `$TANDEM_CLUSTER`) on run, resume and fork.

A run's graph stays in the process that drives it (it holds the run's lock and writes its
checkpoints); what is spread is the expensive part, the cross-validation's fold fits and the
Executor's dry runs, which `tools/training.py` hands to joblib without naming a backend. Inside
`fold_fits_on(address)` joblib's `dask` backend is in force, so those fits become tasks on the
cluster's workers. When every worker can read the file the run's development data are mapped
from, a fold task names that file and the worker maps it once per run (tools/training.py
`MappedData`); otherwise joblib scatters the frame once per candidate's batch of folds. The
same seeds give the same ledger and holdout scores as a local run (tests/test_dask.py); the
delivered model's file may differ byte for byte (it is fitted on a worker and pickled back),
not in what it predicts.

Workers must import the same tandem and reach the run's data files at the same paths, as for
bench workers (benchmarks/cluster.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import joblib

from tandem.tools.dask_client import cluster_address, dashboard, open_client


@contextmanager
def fold_fits_on(address: str | None) -> Iterator[str | None]:
    """joblib's fold fits on the cluster at `address` (else `$TANDEM_CLUSTER`) while the body runs;
    yields the dashboard's link (None without one). Without an address, nothing changes."""
    address = cluster_address(address)
    if address is None:
        yield None
        return
    with open_client(address) as client, joblib.parallel_config(backend="dask"):
        yield dashboard(client)
