"""Shared builders for the LDAP connector tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors.ldap import PLUGIN, LdapRevoker, LdapSource
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Credential, CredentialKind, SourceData

# Real keys and the fingerprints `ssh-keygen -lf` printed for them.
ED25519_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEv9DFvl9mwrjX46Ey7ZrHv695WXxoBAIvXlhbE55NhQ test@host"
ED25519_FP = "SHA256:k/kP0/YVDWfswYaG4GnnuimpTN1Yef1tIM4qJLakU+o"
RSA_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDUvRmZI9m8J65tDEjMwfTIZ1btfPoq0UcTGp5veOrltJYoEbuzTNDpLnO76h6mxSAu"
    "DeH+bL06U/GqiKFR5Hxwq9bDFDDP74TkYZXwRgc94bPShQ+WpeXJEv9OrEr632sAJNvV3e5d+s6llVDI5TZKo4Of9k78XR9i/NqVVkjH"
    "Hw== rsa@host"
)
RSA_FP = "SHA256:RJTMFyVgfRG1rBwT8y4DqyLDbmoYixa8CkreMLUyKU8"


def table(url: str, bind_dn: str, base_dn: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "corp-ldap",
        "type": "ldap",
        "url": url,
        "bind_dn": bind_dn,
        "password_env": "LDAP_TEST_PASSWORD",
        "base_dn": base_dn,
        "dialect": "openldap",
        **extra,
    }


def ctx(password: str, clients: Mapping[str, Any] | None = None) -> SourceContext:
    return SourceContext(Path("."), env={"LDAP_TEST_PASSWORD": password}, clients=dict(clients or {}))


def source(password: str, **kwargs: Any) -> LdapSource:
    src = PLUGIN.make_source(SourceOptions(table(**kwargs)), ctx(password))
    assert isinstance(src, LdapSource)
    return src


def revoker(password: str, **kwargs: Any) -> LdapRevoker:
    assert PLUGIN.make_revoker is not None
    rev = PLUGIN.make_revoker(SourceOptions(table(**kwargs)), ctx(password))
    assert isinstance(rev, LdapRevoker)
    return rev


def creds_of(data: SourceData, account_id: str, kind: CredentialKind | None = None) -> list[Credential]:
    return [
        c
        for c in data.credentials
        if c.account_id.lower() == account_id.lower() and (kind is None or c.kind is kind)
    ]


def uid_of(data: SourceData, account_id: str) -> str:
    """The immutable identity (``Account.uid``) the source read for ``account_id``."""
    (uid,) = {a.uid for a in data.accounts if a.account_id.lower() == account_id.lower()}
    return uid


def target_for(data: SourceData, cred: Credential, username: str = "") -> ActionTarget:
    """The action target the core plans for ``cred``: with the account's identity from ``data``."""
    return ActionTarget(
        source=cred.source,
        system="ldap",
        account_id=cred.account_id,
        username=username,
        credential_id=cred.credential_id,
        credential_kind=cred.kind,
        detail=cred.detail,
        scope=cred.scope,
        account_uid=uid_of(data, cred.account_id),
    )
