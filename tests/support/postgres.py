"""A throwaway PostgreSQL cluster for the tests: Debian's `postgresql` binaries, loopback only.

`initdb` makes a cluster in a fresh temporary folder, `pg_ctl` starts it on 127.0.0.1 on a free
port (its socket in the same folder, trust authentication) and stops it at the end. The server
refuses to run as root, so under root every command runs as the unprivileged `postgres` user the
package creates, which owns the folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from stack.processes import free_port

INSTALL = "this test needs Debian's PostgreSQL: `apt-get install postgresql`"
SERVER_USER = "postgres"  # the package's system user; the server will not run as root
SUPERUSER = "mlops"  # the cluster's superuser role (initdb -U)
# durability is no use to a cluster that lives for one test
FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


@dataclass(frozen=True)
class Postgres:
    """A running cluster's address and the database made for the test."""

    port: int
    database: str
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    def url(self, driver: str, **query: str) -> str:
        """Return a SQLAlchemy URL of the database with the given driver (and query, encoded)."""
        tail = urlencode(query, quote_via=quote)
        base = f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{self.database}"
        return f"{base}?{tail}" if tail else base

    @property
    def prefect_url(self) -> str:
        """The URL for PREFECT_API_DATABASE_CONNECTION_URL (asyncpg, as Prefect's server uses)."""
        return self.url("asyncpg")

    @property
    def sqlalchemy_url(self) -> str:
        """The URL for synchronous SQLAlchemy clients, such as an Optuna storage (psycopg 3)."""
        return self.url("psycopg")

    def connect(self, database: str | None = None) -> Any:
        """Open a psycopg connection (autocommit) to the test's database or another one."""
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=database or self.database,
            autocommit=True,
        )


def bin_dir() -> Path | None:
    """Return the folder of initdb and pg_ctl: the newest /usr/lib/postgresql/*/bin, or PATH's."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for folder in reversed(versions):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return Path(initdb).parent if initdb and pg_ctl else None


def missing() -> str | None:
    """Say why a PostgreSQL cluster cannot be started here, or None when it can."""
    if bin_dir() is None:
        return f"no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on PATH; {INSTALL}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return (
                f"PostgreSQL will not run as root and there is no '{SERVER_USER}' user; {INSTALL}"
            )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "this test needs psycopg: `pip install -e '.[postgres]'`"
    return None


def skip_without_postgres() -> None:
    """Skip the calling test, saying how to install PostgreSQL, where a cluster cannot start."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)


@contextmanager
def running_postgres(database: str = "mlops", timeout_s: int = 60) -> Iterator[Postgres]:
    """Start a fresh cluster with an empty `database`; stop it and remove its files at the end."""
    folder = Path(tempfile.mkdtemp(prefix="mlops-postgres-"))
    cluster = _Cluster(folder, free_port(), timeout_s)
    try:
        cluster.init()
        cluster.start()
        server = Postgres(port=cluster.port, database=database)
        with server.connect("postgres") as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
        yield server
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


class _Cluster:
    """initdb, pg_ctl start and stop on one data folder, as the unprivileged user under root."""

    def __init__(self, folder: Path, port: int, timeout_s: int) -> None:
        folder_bin = bin_dir()
        if folder_bin is None:
            raise RuntimeError(missing())
        self.bin, self.folder, self.port, self.timeout_s = folder_bin, folder, port, timeout_s
        self.data, self.log = folder / "data", folder / "postgres.log"
        self.user = pwd.getpwnam(SERVER_USER) if os.geteuid() == 0 else None
        if self.user is not None:
            os.chown(folder, self.user.pw_uid, self.user.pw_gid)

    def run(self, *command: str) -> str:
        """Run a PostgreSQL command (as the server's user under root); raise with its output."""
        as_user: dict[str, Any] = {}
        if self.user is not None:
            as_user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        done = subprocess.run(
            [str(self.bin / command[0]), *command[1:]],
            cwd=self.folder,
            capture_output=True,
            text=True,
            check=False,
            timeout=self.timeout_s + 30,
            **as_user,
        )
        if done.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{command[0]} failed:\n{done.stdout}\n{done.stderr}\n{log}")
        return done.stdout

    def init(self) -> None:
        auth = ["--auth-local=trust", "--auth-host=trust"]
        self.run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8", "-N", *auth)

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} {FAST}"
        wait = ["-w", "-t", str(self.timeout_s)]
        self.run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), *wait, "-o", options)

    def stop(self) -> None:
        """Stop the server (fast shutdown); kill it if pg_ctl cannot."""
        if not (self.data / "postmaster.pid").exists():
            return
        try:
            self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
        except (RuntimeError, subprocess.TimeoutExpired):
            self.kill()

    def kill(self) -> None:
        """Kill the postmaster (SIGQUIT: its children exit with it), then SIGKILL what is left."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
