"""LDAP / Active Directory connector: source type ``ldap`` (dialects openldap, ad, 389ds).

``PLUGIN`` is what the core's registry loads. The layout is the one in ``connectors/README.md``
(``settings``, ``clients``, ``source``, ``translate``, ``revoker``, ``demo``) plus ``dialects.py``
(what differs between OpenLDAP, Active Directory and 389-DS) and ``search.py`` (complete
reads: paging, truncation, referrals, escaped filters), both shared by source and revoker.
"""

from __future__ import annotations

from connectors._shared.plugin import RevokerChoice, account_plugin
from connectors.ldap.clients import Connector, injected_connector, real_connector
from connectors.ldap.demo import demo
from connectors.ldap.revoker import LdapRevoker, revoker_for
from connectors.ldap.settings import OPTIONS, LdapSettings, parse_settings
from connectors.ldap.source import LdapSource
from connectors.ldap.translate import SYSTEM
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import MatchSpec, SourceContext


def _connect(options: SourceOptions, ctx: SourceContext) -> tuple[LdapSettings, Connector]:
    # Injected client (tests, demo): ``ctx.clients[<source name>]`` is a zero-argument callable
    # returning an open, *bound* ``ldap3.Connection`` (any strategy, e.g. ``MOCK_SYNC``); source
    # and revoker call it once per pass and unbind the connection afterwards. Without it, they
    # connect to ``url`` and bind as ``bind_dn`` with the password from ``password_env``.
    client = injected_connector(options, ctx)
    settings = parse_settings(options, ctx, need_password=client is None)
    return settings, client or real_connector(settings)


PLUGIN = account_plugin(
    "ldap",
    SYSTEM,
    _connect,
    source=LdapSource,
    # The dialect's revoker (OpenLDAP, AD or 389-DS); LdapRevoker.actions declares all of theirs.
    revoker=RevokerChoice(LdapRevoker.actions, revoker_for),
    read_permissions=(
        "bind as bind_dn (simple bind, over TLS unless the link is trusted)",
        "search + read on account entries under base_dn/extra_base_dns (and group entries under "
        "group_base_dn): objectClass, uid, cn, mail, employeeNumber/employeeID, sAMAccountName, "
        "userPrincipalName, displayName, sshPublicKey, memberOf",
        "read the operational state attributes: pwdAccountLockedTime, pwdLastSuccess, authTimestamp "
        "(openldap); userAccountControl, lastLogonTimestamp (ad); nsAccountLock, lastLoginTime (389ds)",
        "read the immutable identity attribute, asked for by name: entryUUID (openldap), objectGUID "
        "(ad), nsUniqueId (389ds); without it nothing of that account is ever revoked",
        "no referral chasing: a referral or continuation reference fails its base unless its DN is "
        "listed in ignore_referrals_to",
        "a size limit that allows full paged reads (OpenLDAP olcLimits size.prtotal=unlimited for "
        "the bind identity; AD paging within MaxPageSize)",
    ),
    options=OPTIONS,
    match=MatchSpec(
        employee_id_attributes=("employeeNumber", "employeeID"),
        email_attributes=("mail", "userPrincipalName"),
    ),
    demo=demo,
)

__all__ = ["PLUGIN", "LdapRevoker", "LdapSource"]
