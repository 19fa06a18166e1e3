"""A real, throwaway PostgreSQL 15 server for the tests: made in a temporary folder, on a free port.

`initdb` makes a cluster whose superuser `tandem` has a password (TCP connections must give it,
so the tests show where the password comes from); `pg_ctl` starts it listening on 127.0.0.1 only.
The server refuses to run as root, so when the tests run as root (as CI does) it runs as the
unprivileged `nobody`, which owns the folder. `stop()` stops it and removes the folder.

No PostgreSQL, no pass: a machine without the binaries fails the test with the command that
installs them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

BIN = Path(os.environ.get("TANDEM_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER, PASSWORD, DATABASE = "tandem", "s3cret-pw", "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; `url()` connects to it."""

    def __init__(self) -> None:
        if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
            pytest.fail(
                f"PostgreSQL 15 is not installed ({BIN}/initdb missing): apt-get install postgresql",
                pytrace=False,
            )
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tandem-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.owner: dict[str, Any] = {}
        if os.geteuid() == 0:  # PostgreSQL refuses root: the folder and the server belong to `nobody`
            nobody = pwd.getpwnam("nobody")
            self.owner = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        (self.root / "pw").write_text(PASSWORD + "\n")
        if self.owner:
            os.chown(self.root / "pw", self.owner["user"], self.owner["group"])
        self._as_owner(
            BIN / "initdb",
            "-D",
            self.data,
            "-U",
            USER,
            "--pwfile",
            self.root / "pw",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
        )
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=50 -c fsync=off"
        self._as_owner(BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start")

    def _as_owner(self, *argv: Any) -> None:
        done = subprocess.run(
            [str(a) for a in argv],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"},
            **self.owner,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}{log}")

    def url(self, *, password: bool = True, database: str = DATABASE) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def halt(self) -> None:
        """Stop the server abruptly (its folder kept), as a database that goes away mid-run."""
        self._as_owner(BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def start(self) -> None:
        """Start a halted server again on the same port."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=50 -c fsync=off"
        self._as_owner(BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        try:
            self._as_owner(BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
