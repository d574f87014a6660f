"""Where LDAP connections come from: an injected connector (tests, demo) or the configured server.

A *connector* is a zero-argument callable returning an open, bound ``ldap3.Connection``; the
source and the revoker call it once per pass and unbind afterwards (:func:`close`).
Real connections: ``ldap3.Server`` + ``Connection`` with a simple bind (``ldaps://`` or
StartTLS with ``ca_file``), connect and receive timeouts, and no automatic referral chasing
(a referral to a server we were not configured for is not followed silently; the read that
met it fails its base instead, see ``search.py``).
"""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import Callable
from typing import Any

import ldap3
from ldap3.core import exceptions as ldap_exc

from connectors.ldap.settings import LdapSettings
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext

# An injected client: a callable that returns an open, bound ldap3 Connection.
Connector = Callable[[], Any]


def injected_connector(options: SourceOptions, ctx: SourceContext) -> Connector | None:
    """``ctx.clients[<source name>]`` when a connector was injected (then no password is needed)."""
    client = ctx.clients.get(options.string("name"))
    if client is not None and not callable(client):
        raise TypeError("an injected ldap client must be a callable returning a bound ldap3 Connection")
    return client


def real_connector(settings: LdapSettings) -> Connector:
    """A connector that opens a new, bound connection to the configured server."""

    def connect() -> Any:
        use_ssl = settings.url.lower().startswith("ldaps://")
        tls = None
        if use_ssl or settings.start_tls:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                version=ssl.PROTOCOL_TLS_CLIENT,
                ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
            )
        where = settings.url
        try:
            server = ldap3.Server(
                settings.url,
                use_ssl=use_ssl,
                tls=tls,
                get_info=ldap3.NONE,
                connect_timeout=settings.connect_timeout,
            )
            conn = ldap3.Connection(
                server,
                user=settings.bind_dn,
                password=settings.password,
                # ldap3 packs this into SO_RCVTIMEO as whole seconds: it must be an int.
                receive_timeout=max(1, math.ceil(settings.receive_timeout)),
                auto_referrals=False,
                raise_exceptions=False,
                # Do not invent empty lists for asked-for attributes an entry lacks: at 20,000
                # entries that bookkeeping costs more than decoding what the server sent.
                return_empty_attributes=False,
                read_only=False,
            )
            conn.open()
            if settings.start_tls and not use_ssl:
                conn.start_tls()
            if not conn.bind():
                result = conn.result
                conn.unbind()
                raise SourceError(
                    f"{where}: bind as {settings.bind_dn} failed: {result.get('description')} "
                    f"{result.get('message') or ''}".strip()
                )
        except ldap_exc.LDAPException as exc:
            raise SourceError(f"{where}: cannot connect: {type(exc).__name__}: {exc}") from exc
        return conn

    return connect


def close(conn: Any) -> None:
    """Unbind; a connection that already broke has nothing left to close."""
    with contextlib.suppress(ldap_exc.LDAPException):
        conn.unbind()
