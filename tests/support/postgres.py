"""A real PostgreSQL server for the test session (initdb + pg_ctl on a free loopback port).

initdb refuses to run as root, so the server runs as the ``postgres`` system user (created if
missing). Each test that asks for ``postgres_url`` gets its own fresh database.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                pg_binary("pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            check=False,
            capture_output=True,
        )


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--", *cmd]


def start_postgres(base: Path) -> PostgresServer:
    """initdb into ``base`` and start a server on a free 127.0.0.1 port (about a second)."""
    datadir = base / "pgdata"
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chmod(base, 0o777)  # the postgres user must reach the data directory
    subprocess.run(
        _as_postgres(
            [pg_binary("initdb"), "-D", str(datadir), "-U", "app", "--auth=trust", "--no-sync", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    port = free_port()
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off -c max_connections=100"
    proc = subprocess.run(
        _as_postgres(
            [
                pg_binary("pg_ctl"),
                "-D",
                str(datadir),
                "-w",
                "-t",
                "30",
                "-l",
                str(base / "pg.log"),
                "-o",
                opts,
                "start",
            ]
        ),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        log = (base / "pg.log").read_text() if (base / "pg.log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {proc.stderr}\n{log}")
    return PostgresServer(datadir, port)


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
