"""The ``vault`` source's read passes: identity entities, their logins, and their tokens.

Bulk pass (:meth:`VaultSource.collect`), one scope (the namespace):

- ``LIST identity/entity/id`` (names and aliases), then ``GET identity/entity/id/<id>`` for each
  (metadata ``email`` / ``employee_id``, ``disabled``), ``workers`` at a time: the list alone has
  no metadata, and people are matched through it;
- ``GET sys/auth`` for the userpass mounts, ``LIST auth/<mount>/users`` on each: a userpass
  alias whose user exists is a password that still logs in; a userpass user no entity knows
  (it never logged in) is an account of its own.

Detail pass (:meth:`VaultSource.detail`), for the entities the core asks about only:
``LIST auth/token/accessors`` (``sudo``) and ``POST auth/token/lookup-accessor`` for each (Vault
has no "tokens of an entity" call), keeping the tokens of those entities, and of the entities
merged into them (``merged_entity_ids``: such a token keeps the merged entity's id and acts as
the entity it was merged into). With ``tokens = false`` it is skipped.

Anything that fails fails the scope (``SourceError`` from the bulk pass, a ``ScopeFailure`` from
the detail pass): a partial list of entities or tokens is never taken as the whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from connectors.vault.clients import VaultApi, VaultCallError
from connectors.vault.settings import VaultSettings
from connectors.vault.translate import (
    SYSTEM,
    entity_account,
    entity_credential,
    token_credential,
    userpass_account,
    userpass_credential,
)
from offboard_audit.core.errors import SourceError
from offboard_audit.core.records import Account, Credential, ScopeFailure, SourceData

READ_PERMISSIONS: tuple[str, ...] = (
    "list on identity/entity/id, read on identity/entity/id/* (entities, aliases, metadata)",
    "read on sys/auth (which mounts are userpass, their accessors)",
    "list on auth/<userpass mount>/users",
    "sudo + list on auth/token/accessors, update on auth/token/lookup-accessor (the leavers' tokens; "
    "tokens = false skips them)",
)


class VaultSource:
    """Reads one Vault/OpenBao namespace's identities (see the module docstring)."""

    system = SYSTEM

    def __init__(self, settings: VaultSettings, api: VaultApi) -> None:
        self.name = settings.name
        self.settings = settings
        self.api = api
        # The bulk pass's credentials by account: the detail pass returns them with the tokens.
        self._bulk: dict[str, list[Credential]] = {}
        # Entities merged into another one (their id -> the surviving entity's), from the bulk pass.
        self._merged: dict[str, str] = {}

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self.settings.workers, len(items))) as pool:
            return list(pool.map(fn, items))

    def collect(self) -> SourceData:
        s = self.settings
        scope = s.scope
        try:
            listed = self.api.list_info("identity/entity/id")
            entities = [e for e in self._map(self._entity, sorted(listed)) if e is not None]
            mounts = self.api.read("sys/auth") or {}
            userpass = {
                f"auth/{path}": (str(m.get("accessor") or ""), set(self.api.list(f"auth/{path}users")))
                for path, m in sorted(mounts.items())
                if isinstance(m, dict) and m.get("type") == "userpass"
            }
        except VaultCallError as exc:
            raise SourceError(f"{self.name}: {exc}") from exc

        accounts: list[Account] = []
        credentials: list[Credential] = []
        aliased: set[tuple[str, str]] = set()
        for entity in entities:
            account = entity_account(self.name, scope, entity, s.human_auth_types)
            accounts.append(account)
            credentials.append(entity_credential(self.name, scope, entity))
            for alias in entity.get("aliases") or ():
                mount, user = str(alias["mount_path"]), str(alias["name"])
                aliased.add((mount, user))
                if mount in userpass and user in userpass[mount][1]:
                    credentials.append(
                        userpass_credential(
                            self.name, scope, account.account_id, mount, user, alias.get("creation_time")
                        )
                    )
        for mount, (accessor, users) in userpass.items():
            for user in sorted(users - {u for m, u in aliased if m == mount}):
                account = userpass_account(self.name, scope, mount, accessor, user)
                accounts.append(account)
                credentials.append(userpass_credential(self.name, scope, account.account_id, mount, user))
        self._merged = {
            str(merged): str(e["id"]) for e in entities for merged in e.get("merged_entity_ids") or ()
        }
        self._bulk = {}
        for c in credentials:
            self._bulk.setdefault(c.account_id, []).append(c)
        return SourceData(tuple(accounts), tuple(credentials), scopes=(scope,))

    def _entity(self, entity_id: str) -> dict[str, Any] | None:
        # None: deleted between the list and the read.
        return self.api.read(f"identity/entity/id/{entity_id}")

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        s = self.settings
        entities = {a.account_id for a in accounts if a.uid == a.account_id}
        if not s.tokens or not entities:
            return SourceData()
        try:
            accessors = self.api.list("auth/token/accessors")
            infos = self._map(self._token, accessors)
        except VaultCallError as exc:
            return SourceData(failed_scopes=(ScopeFailure(s.scope, f"listing tokens: {exc}"),))
        owners = {m: e for m, e in self._merged.items() if e in entities} | {e: e for e in entities}
        tokens = [
            token_credential(self.name, s.scope, info, owners[str(info.get("entity_id"))])
            for info in infos
            if info is not None and str(info.get("entity_id")) in owners
        ]
        bulk = [c for a in sorted(entities) for c in self._bulk.get(a, ())]
        return SourceData(credentials=tuple(bulk + tokens), scopes=(s.scope,))

    def _token(self, accessor: str) -> dict[str, Any] | None:
        try:
            return self.api.write("auth/token/lookup-accessor", {"accessor": accessor})
        except VaultCallError as exc:
            if exc.status == 400:
                return None  # expired or revoked since the list ("invalid accessor")
            raise
