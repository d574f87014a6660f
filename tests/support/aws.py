"""AWS test support: a moto server on a free loopback port, and fast seeding of IAM users.

The server is moto's ``ThreadedMotoServer`` running in the test process, so tests can seed it
through moto's backend (``iam_backends[account]["aws"]``), which is ~100x faster than API
calls and the only way to back-date ``create_date`` and ``last_used``. Subprocesses (the CLI
end-to-end test) reach it over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.records import CredentialKind
from tests.support.ports import free_port, wait_for_port

MOTO_ACCOUNT = "123456789012"
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    """A moto server in this process, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO; thousands of lines would drown test and bench output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Clear every moto backend (POST /moto-api/reset)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto_endpoint(moto_server: MotoServer) -> Iterator[str]:
    """The server's URL, with every backend cleared before and after the test."""
    moto_server.reset()
    yield moto_server.url
    moto_server.reset()


@dataclass
class SeedUser:
    """One IAM user to create through moto's backend."""

    name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    path: str = "/"
    keys: Sequence[tuple[datetime, datetime | None]] = ()  # (created, last used) per access key
    inactive_keys: Sequence[datetime] = ()
    password_last_used: datetime | None = None
    has_password: bool = False
    groups: Sequence[str] = ()
    created: datetime | None = None


def action_target(
    user: str,
    credential_id: str,
    kind: CredentialKind,
    uid: str,
    *,
    detail: str = "",
    scope: str = MOTO_ACCOUNT,
    source: str = "aws-rv",
) -> ActionTarget:
    """An ActionTarget on IAM user ``user`` as the planner builds it, carrying ``uid``: the
    UserId read when the finding was made."""
    return ActionTarget(
        source=source,
        system="aws_iam",
        account_id=f"arn:aws:iam::{MOTO_ACCOUNT}:user/{user}",
        username=user,
        credential_id=credential_id,
        credential_kind=kind,
        detail=detail,
        scope=scope,
        account_uid=uid,
    )


def iam_backend(account_id: str = MOTO_ACCOUNT) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account_id]["aws"]


def seed_users(users: Sequence[SeedUser], account_id: str = MOTO_ACCOUNT) -> Any:
    """Create users, keys, passwords and groups straight in moto's backend; returns the backend."""
    from moto.iam.models import AccessKeyLastUsed

    backend = iam_backend(account_id)
    for u in users:
        for group in u.groups:
            if group not in backend.groups:
                backend.create_group(group)
        user = backend.create_user(
            region_name="us-east-1",
            user_name=u.name,
            path=u.path,
            tags=[{"Key": k, "Value": v} for k, v in u.tags.items()],
        )
        if u.created is not None:
            user.create_date = u.created
        for created, used in u.keys:
            key = backend.create_access_key(u.name)
            key.create_date = created
            if used is not None:
                key.last_used = AccessKeyLastUsed(timestamp=used, service="s3", region="us-east-1")
        for created in u.inactive_keys:
            key = backend.create_access_key(u.name, status="Inactive")
            key.create_date = created
        if u.has_password or u.password_last_used is not None:
            backend.create_login_profile(u.name, "Seeded-Password-1!")
            user.password_last_used = u.password_last_used
        for group in u.groups:
            backend.add_user_to_group(group, u.name)
    return backend


def population(total: int, departed: int, now: datetime, prefix: str = "user") -> list[SeedUser]:
    """``total`` human users with a key and a password, of which the first ``departed`` are named
    ``left-NNN`` (their owners will be terminated) and the rest ``<prefix>-NNNNN``."""
    out: list[SeedUser] = []
    for i in range(total):
        name = f"left-{i:03d}" if i < departed else f"{prefix}-{i:05d}"
        out.append(
            SeedUser(
                name=name,
                tags={"email": f"{name}@example.com"},
                keys=[(now - timedelta(days=300), now - timedelta(days=i % 30 + 1))],
                has_password=True,
                password_last_used=now - timedelta(days=i % 20 + 2),
                groups=("staff",),
            )
        )
    return out
