"""The database handle every storage module works on: an engine for SQLite or PostgreSQL.

Also what belongs to an engine beyond its connections: the audit key its chain appends are
keyed with, and the last audit event this process appended through it (for the anchors), and
how its URL is shown (:func:`mask_url`: never with its password).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, unquote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from offboard_audit.core.audit_chain import AuditEvent, ChainKey
from offboard_audit.core.errors import ConfigError
from offboard_audit.storage.files import create_private

T = TypeVar("T")

# Rows per multi-row INSERT (and ids per IN list): well below both databases' limits.
CHUNK = 5000


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///path`` URL (None for memory and URI-style databases)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.query.get("uri"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


SQLITE_BUSY_TIMEOUT = 30.0  # seconds a write waits for another process's lock


def sqlite_busy_timeout(url: str) -> float:
    """How long (seconds) a SQLite write waits for a lock another process holds: the URL's
    ``?timeout=N`` (SQLite's own connect parameter), else 30 s. Past it, the command fails with
    "database is locked" (exit 4) rather than waiting for ever."""
    try:
        raw = make_url(url).query.get("timeout")
    except ArgumentError:
        return SQLITE_BUSY_TIMEOUT
    if raw is None:
        return SQLITE_BUSY_TIMEOUT
    text = raw[-1] if isinstance(raw, tuple) else raw
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ConfigError(
            f"database URL: timeout={text!r} is not a number of seconds (e.g. ?timeout=5)", "database.url"
        )
    return value


def make_engine(url: str) -> Engine:
    """An engine for SQLite (WAL, busy timeout, foreign keys) or PostgreSQL (psycopg 3).

    A new SQLite database file is created owner-only (0600) whatever the umask, before SQLite
    opens it: SQLite creates its -wal and -shm files with the database file's permissions.
    """
    if url.startswith("sqlite"):
        in_memory = url in ("sqlite://", "sqlite:///:memory:")
        path = sqlite_file(url)
        if path is not None and path.parent.is_dir():
            create_private(path)
        busy = sqlite_busy_timeout(url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy},
            poolclass=StaticPool if in_memory else None,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            if not in_memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.driver == "psycopg":

        @event.listens_for(engine, "connect")
        def _nul_safe(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            # PostgreSQL text cannot hold NUL; values from other systems may (storage/pg_text.py).
            from offboard_audit.storage.pg_text import register_nul_safe_text

            register_nul_safe_text(dbapi_conn.adapters)

    return engine


class Database:
    """An engine and transactions on it; the stores of each concern build on this."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn


def is_postgres(db: Database) -> bool:
    return db.engine.dialect.name == "postgresql"


# --- what this process keeps per engine -------------------------------------------------------

# Keyed by the engine, not by a Database object: several stores share one engine (the daemon
# wraps the store it opened in stores of its own), and all of them must key their appends.
_CHAIN_KEYS: weakref.WeakKeyDictionary[Engine, ChainKey] = weakref.WeakKeyDictionary()
_APPENDED: weakref.WeakKeyDictionary[Engine, AuditEvent] = weakref.WeakKeyDictionary()


def use_chain_key(engine: Engine, key: ChainKey | None) -> None:
    """Key every audit event appended through ``engine`` from now on (None: unkeyed)."""
    if key is None:
        _CHAIN_KEYS.pop(engine, None)
    else:
        _CHAIN_KEYS[engine] = key


def chain_key(engine: Engine) -> ChainKey | None:
    return _CHAIN_KEYS.get(engine)


def note_appended(engine: Engine, event: AuditEvent) -> None:
    """Called once a transaction that appended ``event`` (its last) has committed."""
    last = _APPENDED.get(engine)
    if last is None or event.seq > last.seq:
        _APPENDED[engine] = event


def take_appended(engine: Engine) -> AuditEvent | None:
    """The newest event this process appended through ``engine`` since the last call."""
    return _APPENDED.pop(engine, None)


# --- URLs with passwords ------------------------------------------------------------------------

MASK = "***"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)([^&#]*)")


def _userinfo(url: str) -> tuple[str, str, str, str] | None:
    """(scheme, user, password, rest) of ``scheme://user:password@rest``, or None.

    The password ends at the *last* ``@`` before the query: a password pasted without
    percent-encoding (``p@ss/w``) is still all of it, so it is masked whole."""
    m = _SCHEME.match(url)
    if not m:
        return None
    after = url[m.end() :]
    at = after.split("?", 1)[0].rfind("@")
    if at < 0:
        return None
    user, sep, password = after[:at].partition(":")
    if not sep:
        return None
    return m.group(), user, password, after[at + 1 :]


def url_password(url: str) -> str | None:
    """The password in ``url`` (user info or a ``password=`` query parameter), or None."""
    parts = _userinfo(url)
    if parts is not None and parts[2]:
        return unquote(parts[2])
    q = _QUERY_PASSWORD.search(url)
    if q and q.group(2):
        return unquote(q.group(2))
    return None


def mask_url(url: str) -> str:
    """``url`` fit to print: its password (user info or ``password=`` parameter) is ``***``.

    Works on the text, so it also masks URLs SQLAlchemy cannot parse (which is when they end up
    in error messages)."""
    parts = _userinfo(url)
    masked = url if parts is None else f"{parts[0]}{parts[1]}:{MASK}@{parts[3]}"
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, masked)


def redact(text: str, url: str) -> str:
    """``text`` (an error message) with the URL's password masked wherever it appears, as it is
    in the URL, decoded, or encoded."""
    out = text.replace(url, mask_url(url))
    parts = _userinfo(url)
    raw = [parts[2]] if parts is not None and parts[2] else []
    password = url_password(url)
    if password:
        raw += [password, quote(password, safe=""), quote(password)]
    for form in sorted(set(raw), key=len, reverse=True):
        out = out.replace(form, MASK)
    return out


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` added to its user info (``[database] password_env``)."""
    parsed = make_url(url)
    return parsed.set(password=password).render_as_string(hide_password=False)
