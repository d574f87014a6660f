"""A real PostgreSQL server for the test session (initdb, then ``postgres`` on a free loopback port).

initdb refuses to run as root, so the server runs as the ``postgres`` system user (created if
missing). Each test that asks for ``postgres_url`` gets its own fresh database.

The server is a child of the test process, not a daemon that ``pg_ctl start`` detaches: it
gets the parent-death signal (``tests/support/lifetime.py``), so a test run killed outright
leaves no PostgreSQL behind.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.lifetime import die_with_parent
from tests.support.ports import free_port

_SEARCH = [
    "/usr/local/bin",
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
]


def pg_binary(name: str) -> str:
    for folder in _SEARCH:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(
        f"PostgreSQL binary {name!r} not found: run scripts/install-test-deps.sh (Debian package postgresql)"
    )


@dataclass
class PostgresServer:
    datadir: Path
    port: int
    process: subprocess.Popen[bytes]
    user: str = "app"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{db}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are ended, then the server exits)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _postgres_user() -> dict[str, Any]:
    """``Popen`` arguments that run a command as the ``postgres`` user when the tests run as root."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return {"user": "postgres", "group": pwd.getpwnam("postgres").pw_gid, "extra_groups": []}


def _wait_ready(server: PostgresServer, log: Path, timeout: float = 30.0) -> None:
    """Until the server accepts a session (a listening socket is not enough: a starting server
    answers "the database system is starting up"); fail at once if it exits."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with {server.process.returncode}:\n{log.read_text()}")
        try:
            psycopg.connect(
                f"host=127.0.0.1 port={server.port} user={server.user} dbname=postgres", connect_timeout=2
            ).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"PostgreSQL not ready after {timeout}s:\n{log.read_text()}") from None
            time.sleep(0.05)  # polling for readiness, not waiting in its place


def start_postgres(base: Path) -> PostgresServer:
    """initdb into ``base`` and start a server on a free 127.0.0.1 port (about a second)."""
    datadir = base / "pgdata"
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chmod(base, 0o777)  # the postgres user must reach the data directory
    as_postgres = _postgres_user()
    subprocess.run(
        [pg_binary("initdb"), "-D", str(datadir), "-U", "app", "--auth=trust", "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
        **as_postgres,
    )
    port = free_port()
    log = base / "pg.log"
    with log.open("wb") as out:
        # ``user=``/``group=`` are applied before ``preexec_fn`` runs, which matters: a change
        # of user clears the parent-death signal. SIGINT is PostgreSQL's fast shutdown.
        process = subprocess.Popen(
            [
                pg_binary("postgres"),
                "-D",
                str(datadir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(base),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=100",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=functools.partial(die_with_parent, signal.SIGINT),
            **as_postgres,
        )
    server = PostgresServer(datadir, port, process)
    _wait_ready(server, log)
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    base = Path(tempfile.mkdtemp(prefix="offboard-pg-"))
    server = start_postgres(base)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database()
