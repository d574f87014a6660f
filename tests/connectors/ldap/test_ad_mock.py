"""AD behaviour Samba does not reproduce, on ldap3's in-memory MOCK_SYNC directory.

Samba ignores MaxPageSize / MaxResultSetSize, so a directory that stops a search with
sizeLimitExceeded is modelled here: a mock whose search answers code 4 once more than
``limit`` entries were sent in one search, as AD does when its query policy caps a result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ldap3
import pytest

from connectors.ldap import PLUGIN, LdapSource
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext

BASE = "DC=corp,DC=example"
USERS = f"OU=Staff,{BASE}"
BIND = f"CN=svc-audit,{BASE}"


def capped_directory(users: int, limit: int | None) -> Any:
    """A mock AD with ``users`` users; searches past ``limit`` entries end with sizeLimitExceeded."""
    server = ldap3.Server("ad.mock.invalid", get_info=ldap3.NONE)
    seed = ldap3.Connection(server, user=BIND, password="pw", client_strategy=ldap3.MOCK_SYNC)
    seed.strategy.add_entry(BASE, {"objectClass": ["domain"]})
    seed.strategy.add_entry(USERS, {"objectClass": ["organizationalUnit"]})
    seed.strategy.add_entry(BIND, {"objectClass": ["user"], "userPassword": ["pw"]})
    for i in range(users):
        seed.strategy.add_entry(
            f"CN=user{i},{USERS}",
            {
                "objectClass": ["top", "person", "user"],
                "objectCategory": ["person"],
                "sAMAccountName": [f"user{i}"],
                "userAccountControl": ["512"],
            },
        )

    def connect() -> Any:
        conn = ldap3.Connection(server, user=BIND, password="pw", client_strategy=ldap3.MOCK_SYNC)
        conn.bind()
        if limit is not None:
            original = conn.strategy.mock_search
            sent = {"count": 0}

            def capped(request_message: Any, controls: Any) -> Any:
                response, result = original(request_message, controls)
                room = limit - sent["count"]
                if len(response) > room:
                    response, result = response[:room], {**result, "resultCode": 4, "controls": []}
                    result["diagnosticMessage"] = "Size Limit Exceeded"
                sent["count"] += len(response)
                return response, result

            conn.strategy.mock_search = capped
        return conn

    return connect


def ad_source(connect: Any, page_size: int) -> LdapSource:
    table = {
        "name": "ad",
        "type": "ldap",
        "url": "ldap://ad.mock.invalid",
        "bind_dn": BIND,
        "base_dn": USERS,
        "dialect": "ad",
        "page_size": page_size,
    }
    src = PLUGIN.make_source(SourceOptions(table), SourceContext(Path("."), clients={"ad": connect}))
    assert isinstance(src, LdapSource)
    return src


def test_uncapped_mock_ad_reads_every_user_over_several_pages() -> None:
    data = ad_source(capped_directory(250, None), page_size=100).collect()
    assert len(data.accounts) == 250
    assert all(a.enabled for a in data.accounts)


def test_ad_size_limit_mid_paging_fails_the_source_instead_of_returning_a_short_list() -> None:
    src = ad_source(capped_directory(250, limit=150), page_size=100)
    with pytest.raises(SourceError, match=r"truncated.*sizeLimitExceeded.*after 150 entries"):
        src.collect()
