"""A Dask client for `--cluster ADDRESS` (or `$TANDEM_CLUSTER`): a scheduler, or a LocalCluster here.

One place for the address rules, so the commands that spread games over a cluster
(benchmarks/cluster.py: bench, league, train) and the run commands that spread a run's fold fits
over it (`tandem.run_cluster`: run, resume, fork) read `--cluster` the same way.

`ADDRESS` is a scheduler (`tcp://HOST:8786`), or `local` / `local:N` for a `LocalCluster` of N
worker processes with one thread each on this machine (default N: the CPU count). Dask is the
optional extra `dask` (`pip install 'tandem-ml[dask]'`), imported only when a cluster is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tandem.tools.errors import InputError

if TYPE_CHECKING:  # the optional extra `dask`: imported for the type checker only
    from distributed import Client

CLUSTER_ENV = "TANDEM_CLUSTER"


def cluster_address(given: str | None) -> str | None:
    """The cluster to use: the option, else `$TANDEM_CLUSTER`, else None (play here, as always)."""
    return given or os.environ.get(CLUSTER_ENV) or None


@contextmanager
def open_client(address: str) -> Iterator[Client]:
    """A Dask client for `address` (closed on exit, with the local cluster it started, if any);
    an address that cannot be reached is one line, not a traceback."""
    try:
        from distributed import Client, LocalCluster  # the optional extra `dask`
    except ImportError:
        raise InputError("--cluster needs Dask: pip install 'tandem-ml[dask]'") from None
    if address == "local" or address.startswith("local:"):
        workers_text = address.partition(":")[2] or str(os.cpu_count() or 1)
        if not workers_text.isdigit() or int(workers_text) < 1:
            raise InputError(f"--cluster local:N takes a whole number of workers >= 1, got {address!r}")
        cluster = LocalCluster(
            n_workers=int(workers_text), threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(address, timeout="15s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        yield client
    finally:
        client.close()


@contextmanager
def client_for(given: str | None) -> Iterator[Client | None]:
    """The client `--cluster` (or `$TANDEM_CLUSTER`) asks for, with its dashboard's link printed
    once, or None to play here as always."""
    address = cluster_address(given)
    if not address:
        yield None
        return
    with open_client(address) as client:
        if link := dashboard(client):
            print(f"Dask dashboard: {link}", flush=True)
        yield client


def dashboard(client: Client) -> str | None:
    """The cluster's dashboard link, when it has one."""
    link = getattr(client, "dashboard_link", None)
    return str(link) if link else None
