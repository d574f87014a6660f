"""The vault revoker's actions: one class per action, with its definition (the ACL capabilities
it needs), its read, its change and its restore (None when irreversible).

The engine runs them (``offboard_audit.engine.steps``): read, identity and no-op checks, change,
one re-read to verify. Identity is the entity id (``Account.uid``): every read returns the id
of the entity the object belongs to *now* (a token's ``entity_id``, the entity a userpass alias
points to), so a login or token that changed hands is ``target-changed``. Vault's identity and
auth writes are not conditional: every change re-reads the identity immediately before it
writes (``TargetChanged`` when it moved); a change in the instant between that read and the
write would show on the engine's re-read, which then reports the change not verified.

- ``disable_entity``: ``POST identity/entity/id/<id> {"disabled": true}``; undo sets it back.
  A disabled entity's tokens and logins are refused by Vault while it stays disabled.
- ``revoke_token``: ``POST auth/token/revoke-accessor`` (the token and its children). Cannot be
  undone: re-enabling the entity does not bring a revoked token back. A token of an entity merged
  into the target entity (in its ``merged_entity_ids``) is the target's.
- ``delete_userpass_login``: ``DELETE auth/<mount>/users/<name>``. Cannot be undone: userpass has
  no disabled state and the password cannot be restored. Refused, as the entity itself is, when
  the entity the login's alias points to is protected by its name.
- ``rotate_transit_key`` (stage ``rotate``, only with ``policy.auto_rotate_secrets`` and only
  for a key whose ``auto_rotate_period`` is set): ``POST <mount>/keys/<name>/rotate``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from connectors._shared.actions import GONE, NoUndo, define, irreversible
from connectors.vault.clients import VaultApi, VaultCallError
from connectors.vault.settings import VaultSettings
from connectors.vault.translate import parse_time, userpass_uid
from offboard_audit.core.actions import ActionTarget, ResourceState, Stage, identity_mismatch
from offboard_audit.core.errors import RevokeError, TargetChanged
from offboard_audit.core.exposure import exposed_until
from offboard_audit.core.protocols import Restore
from offboard_audit.core.records import CredentialKind

DISABLE_ENTITY = "disable_entity"
REVOKE_TOKEN = "revoke_token"
DELETE_USERPASS_LOGIN = "delete_userpass_login"
ROTATE_TRANSIT_KEY = "rotate_transit_key"


class VaultAccess(Protocol):
    """What every action gets from :class:`~connectors.vault.revoker.VaultRevoker`."""

    api: VaultApi
    settings: VaultSettings

    def refuse(self, target: ActionTarget, *names: str) -> None:
        """RevokeError for a protected entity (by name, id or login name), before any call."""
        ...

    def entity(self, entity_id: str) -> dict[str, Any] | None:
        """``GET identity/entity/id/<id>``; None when there is no such entity."""
        ...

    def calling(self, what: str) -> Any:
        """Turn a failed Vault call into a RevokeError that names it."""
        ...


def _entity(access: VaultAccess, target: ActionTarget) -> dict[str, Any] | None:
    """The target's entity (``GET identity/entity/id/<id>``), refused when protected by id or
    login name (before the call) or by entity name; None when it is gone."""
    access.refuse(target)
    with access.calling(f"read identity/entity/id/{target.account_id}"):
        entity = access.entity(target.account_id)
    if entity is not None:
        access.refuse(target, str(entity.get("name") or ""))
    return entity


class _Action:
    """One action of a revoker: every call it makes goes through the revoker (``access``)."""

    def __init__(self, access: VaultAccess) -> None:
        self.access = access


def _check(target: ActionTarget, identity: str | None) -> None:
    mismatch = identity_mismatch(
        target, ResourceState(exists=identity is not None, active=False, identity=identity)
    )
    if mismatch is not None:
        raise TargetChanged(mismatch)


class DisableEntity(_Action):
    definition = define(
        DISABLE_ENTITY,
        CredentialKind.ACCOUNT,
        ("read, update on identity/entity/id/*",),
        "Disable the identity entity: Vault refuses every token and login of it while it "
        "is disabled (undo: enable it again).",
    )

    def read(self, target: ActionTarget) -> ResourceState:
        entity = _entity(self.access, target)
        if entity is None:
            return GONE
        disabled = bool(entity.get("disabled"))
        return ResourceState(
            exists=True,
            active=not disabled,
            data=(("entity", str(entity.get("name") or "")), ("disabled", str(disabled).lower())),
            identity=str(entity["id"]),
        )

    def _set(self, target: ActionTarget, disabled: bool) -> None:
        with self.access.calling(f"read identity/entity/id/{target.account_id}"):
            entity = self.access.entity(target.account_id)
        _check(target, str(entity["id"]) if entity else None)
        path = f"identity/entity/id/{target.account_id}"
        with self.access.calling(f"update {path}"):
            self.access.api.write(path, {"disabled": disabled})

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        self._set(target, True)

    @property
    def restore(self) -> Restore | None:
        return self._restore

    def _restore(self, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        if not current.exists:
            raise RevokeError(f"cannot undo {DISABLE_ENTITY}: entity {target.account_id} no longer exists")
        self._set(target, False)

    def restored(self, state: ResourceState, prior: ResourceState) -> bool:
        return True


def _accessor(target: ActionTarget) -> str:
    if not target.credential_id.startswith("token/"):
        raise RevokeError(f"{target.credential_id!r} is not a token accessor id (token/<accessor>)")
    return target.credential_id[len("token/") :]


def _merged_into(owner: str | None, entity: dict[str, Any] | None) -> str | None:
    """The entity a token belongs to: a token of an entity merged into ``entity`` keeps the
    merged entity's id and acts as ``entity`` (Vault resolves it so), so it is ``entity``'s."""
    if owner and entity is not None and owner in (entity.get("merged_entity_ids") or ()):
        return str(entity["id"])
    return owner


class RevokeToken(NoUndo, _Action):
    definition = irreversible(
        REVOKE_TOKEN,
        CredentialKind.ACCESS_KEY,
        (
            "read on identity/entity/id/*",
            "update on auth/token/lookup-accessor",
            "update on auth/token/revoke-accessor",
        ),
        "Revoke the token (and the tokens made from it) by its accessor. IRREVERSIBLE: a "
        "revoked token cannot be restored, and undoing disable_entity does not bring it back.",
    )

    def _owner(self, accessor: str) -> str | None:
        """The entity the token belongs to now ("" for none); None when the token is gone."""
        try:
            info = self.access.api.write("auth/token/lookup-accessor", {"accessor": accessor})
        except VaultCallError as exc:
            if exc.status == 400:  # "invalid accessor": expired or revoked
                return None
            raise RevokeError(str(exc)) from exc
        return str((info or {}).get("entity_id") or "")

    def read(self, target: ActionTarget) -> ResourceState:
        self.access.refuse(target)  # a protected target is refused before its id is parsed
        accessor = _accessor(target)
        entity = _entity(self.access, target)
        if entity is None:
            return GONE
        owner = _merged_into(self._owner(accessor), entity)
        if owner is None:
            return ResourceState(exists=False, active=False, identity=str(entity["id"]))
        return ResourceState(exists=True, active=True, data=(("accessor", accessor),), identity=owner or None)

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        accessor = _accessor(target)
        owner = self._owner(accessor)
        if owner and owner != target.account_id:
            with self.access.calling(f"read identity/entity/id/{target.account_id}"):
                owner = _merged_into(owner, self.access.entity(target.account_id))
        _check(target, owner)
        with self.access.calling("update auth/token/revoke-accessor"):
            self.access.api.write("auth/token/revoke-accessor", {"accessor": accessor})


def _userpass(target: ActionTarget) -> tuple[str, str]:
    """(mount path, user) of ``auth/<mount>/users/<user>``."""
    head, sep, user = target.credential_id.rpartition("/users/")
    if not sep or not head.startswith("auth/") or not user or "/" in user:
        raise RevokeError(f"{target.credential_id!r} is not a userpass login (auth/<mount>/users/<name>)")
    return f"{head}/", user


class DeleteUserpassLogin(NoUndo, _Action):
    definition = irreversible(
        DELETE_USERPASS_LOGIN,
        CredentialKind.PASSWORD,
        (
            "read on sys/auth",
            "update on identity/lookup/entity",
            "read on identity/entity/id/*",
            "read, delete on auth/<userpass mount>/users/*",
        ),
        "Delete the userpass user (its password). IRREVERSIBLE: userpass has no disabled "
        "state, and undo cannot restore the password (a new one would have to be issued).",
    )

    def _mount_accessor(self, mount: str) -> str:
        with self.access.calling("read sys/auth"):
            mounts = self.access.api.read("sys/auth") or {}
        info = mounts.get(mount[len("auth/") :])
        if not isinstance(info, dict) or info.get("type") != "userpass":
            raise RevokeError(f"{mount} is not a userpass auth mount (any more)")
        return str(info["accessor"])

    def _owner(self, target: ActionTarget, accessor: str, user: str) -> str | None:
        """The entity the login's alias points to now, or None when no alias names it; refused
        when that entity is protected by its name (the login's own name may not say so)."""
        with self.access.calling("update identity/lookup/entity"):
            found = self.access.api.write(
                "identity/lookup/entity", {"alias_name": user, "alias_mount_accessor": accessor}
            )
        if not found or not found.get("id"):
            return None
        self.access.refuse(target, str(found.get("name") or ""))
        return str(found["id"])

    def _identity(self, target: ActionTarget) -> tuple[str | None, bool, str, str]:
        mount, user = _userpass(target)
        accessor = self._mount_accessor(mount)
        with self.access.calling(f"read {target.credential_id}"):
            exists = self.access.api.read(target.credential_id) is not None
        owner = self._owner(target, accessor, user)
        if owner is not None:
            return owner, exists, mount, user
        if exists or target.account_uid == userpass_uid(accessor, user):
            # A login no entity knows keeps no id of its own: its identity is its mount and name,
            # there or gone. Gone, it is the planned login with nothing left to delete (before a
            # change: nothing to do; after one: the deletion verified), not another account.
            return userpass_uid(accessor, user), exists, mount, user
        with self.access.calling(f"read identity/entity/id/{target.account_id}"):
            entity = self.access.entity(target.account_id)
        return (str(entity["id"]) if entity else None), False, mount, user

    def read(self, target: ActionTarget) -> ResourceState:
        self.access.refuse(target)
        identity, exists, mount, user = self._identity(target)
        data = (("mount", mount), ("user", user))
        return ResourceState(exists=exists, active=exists, data=data, identity=identity)

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        identity, _exists, _mount, _user = self._identity(target)
        _check(target, identity)
        with self.access.calling(f"delete {target.credential_id}"):
            self.access.api.delete(target.credential_id)


class RotateTransitKey(NoUndo, _Action):
    """Rotate a transit key a leaver exported, only where its own rotation is configured.

    ``read``: ``GET <mount>/keys/<name>``: gone is ``target-changed`` (nothing to rotate, and
    nothing more to prove); no ``auto_rotate_period`` is refused (a rotate task for a person);
    ``active`` while the latest version was created before the last exposure (the time in the
    finding's detail). The identity is the key's id (``<mount>/<name>``). ``change``:
    ``POST <mount>/keys/<name>/rotate``.
    """

    definition = irreversible(
        ROTATE_TRANSIT_KEY,
        CredentialKind.TRANSIT_KEY,
        ("read on <transit mount>/keys/*", "update on <transit mount>/keys/*/rotate"),
        "Rotate the transit key (policy.auto_rotate_secrets; only keys whose auto_rotate_period "
        "is set): a new latest version signs and encrypts from now on. IRREVERSIBLE. Older versions stay "
        "usable (verify, decrypt) until min_decryption_version and min_encryption_version are raised above "
        "the exposed ones: the finding stays open until someone does that, once what they protect is "
        "re-encrypted or re-signed.",
        stage=Stage.ROTATE,
    )

    def _split(self, target: ActionTarget) -> tuple[str, str]:
        mounts = sorted(self.access.settings.transit_mounts, key=len, reverse=True)
        for mount in mounts:
            if target.credential_id.startswith(f"{mount}/"):
                return mount, target.credential_id[len(mount) + 1 :]
        raise RevokeError(f"{target.credential_id!r} is not a key of the transit_mounts {mounts}")

    def read(self, target: ActionTarget) -> ResourceState:
        mount, name = self._split(target)
        with self.access.calling(f"read {mount}/keys/{name}"):
            key = self.access.api.read(f"{mount}/keys/{name}")
        if key is None:
            return GONE
        if int(key.get("auto_rotate_period") or 0) <= 0:
            raise RevokeError(
                f"transit key {target.credential_id} has no auto_rotate_period: rotate it by hand (rotate task)"
            )
        since = exposed_until(target.detail)
        if since is None:
            raise RevokeError(f"no exposure time recorded for {target.credential_id}: run the audit again")
        latest = int(key["latest_version"])
        raw = (key.get("keys") or {}).get(str(latest))
        created = parse_time(raw.get("creation_time") if isinstance(raw, dict) else raw)
        rotated = created is not None and created > since
        data = (
            ("latest_version", str(latest)),
            ("latest_created", created.astimezone(UTC).isoformat() if isinstance(created, datetime) else ""),
            ("min_decryption_version", str(key.get("min_decryption_version"))),
        )
        return ResourceState(exists=True, active=not rotated, data=data, identity=target.credential_id)

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        mount, name = self._split(target)
        with self.access.calling(f"update {mount}/keys/{name}/rotate"):
            self.access.api.write(f"{mount}/keys/{name}/rotate")


# In the order the plan and ``config check`` list them.
ACTIONS: tuple[type[DisableEntity | RevokeToken | DeleteUserpassLogin | RotateTransitKey], ...] = (
    DisableEntity,
    RevokeToken,
    DeleteUserpassLogin,
    RotateTransitKey,
)
