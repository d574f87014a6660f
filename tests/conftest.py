"""Shared test configuration.

Real servers (PostgreSQL, OpenLDAP slapd, Samba AD, moto, local Google Cloud endpoints) are
started by session fixtures in ``tests/support`` on free loopback ports and stopped at the end.
"""

from __future__ import annotations

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.slapd",
    "tests.support.samba",
    "tests.support.aws",
    "tests.support.gcp",
    "tests.support.openbao",
    "tests.support.gcp_exposure",
    "tests.support.revocation",
    "tests.support.github",
]
