"""A private PostgreSQL for tests and benches: `initdb` and `pg_ctl` in a temporary folder
owned by the `postgres` user (initdb refuses root: `runuser` when we are root), listening on
a unix socket in that folder only (no TCP port at all), fsync off: nothing survives it and
nothing outside the folder can reach it.

One cluster per test session; each test gets its own database, cloned from a migrated
template (CREATE DATABASE ... TEMPLATE is a file copy: milliseconds, not a migration).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the server's programs out of PATH, under their major version
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def available() -> str | None:
    """None when a cluster can be started here, else why not."""
    for name in ("initdb", "pg_ctl", "postgres"):
        if _tool(name) is None:
            return f"no {name} (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    return None


class Cluster:
    """One server; `url(db)` names a database on it."""

    # A user who must give a password (the others are trusted on the socket): for the test
    # of a refused login.
    PASSWORD_USER = "guarded"
    PASSWORD = "right-horse-battery"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nl-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(
            _tool("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        (self.data / "pg_hba.conf").write_text(
            f"local all {self.PASSWORD_USER} scram-sha-256\nlocal all all trust\n"
        )
        self.start()
        self.execute(f"CREATE ROLE {self.PASSWORD_USER} LOGIN PASSWORD '{self.PASSWORD}' CREATEDB")

    def _run(self, *args: str | None, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(a) for a in args if a is not None]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.root}' "
            # fsync off: a crash of this machine loses the cluster, which is thrown away
            # anyway; synchronous_commit stays on, so a killed server (restart()) keeps
            # every commit it answered, as a real one does
            "-c fsync=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=128MB"
        )
        self._run(_tool("pg_ctl"), "-D", self.data, "-l", self.log, "-o", options, "-w",
                  "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(_tool("pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop at once (every session cut, as a crash or a failover would), then start."""
        self.stop("immediate")
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", user: str = "postgres", password: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://{user}{secret}@/{database}?host={self.root}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)

    def create(self, name: str, template: str | None = None) -> str:
        """A new database (a copy of `template` when given); returns its URL."""
        self.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return self.url(name)

    def drop(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
