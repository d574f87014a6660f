"""An out-of-tree fake connector whose "system" is a JSON file, for revocation tests.

Register it in a subprocess with ``OFFBOARD_AUDIT_EXTRA_SOURCES="fake=tests.support.fake_connector:PLUGIN"``
(and the repository on ``PYTHONPATH``); in process, :func:`fake_env` gives the same variable.

The state file holds the accounts and credentials the source reads and the revoker changes,
under an exclusive ``flock`` so that several processes can share it. Besides the data it
carries test controls:

* ``fail``: ``{credential_id: message}`` - ``change`` raises ``RevokeError(message)``;
* ``block``: ``{credential_id: "before" | "after"}`` - once, ``change`` writes
  ``FAKE-BLOCKED <id> <when>`` to stderr and waits for a line on stdin, before or after it
  changes the object (so a test can kill the process at exactly that point);
* ``reset_after``: ``{credential_id: message}`` - once, ``change``/``restore`` makes the change
  and then raises ``ConnectionResetError(message)``, as a call that reached the system whose
  answer was lost;
* ``unreadable``: ``{credential_id: message}`` - every ``read`` raises ``ConnectionError(message)``
  (set it from a ``block`` hook to make the re-read after a change fail);
* ``log``: every change the revoker made (``apply``/``undo`` ops), which tests count.

Each account has an immutable ``uid`` (default ``uid-<id>``); a test that deletes an account
and adds another under the same id with a new ``uid`` reproduces a reused name.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState, Stage, identity_mismatch
from offboard_audit.core.errors import RevokeError, TargetChanged
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import (
    ActionSpec,
    ConnectorPlugin,
    MatchSpec,
    Restore,
    SourceContext,
    SourceKind,
)
from offboard_audit.core.records import Account, AccountKind, Credential, CredentialKind, SourceData

PLUGIN_REF = "fake=tests.support.fake_connector:PLUGIN"
REPO = Path(__file__).resolve().parents[2]


def fake_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a subprocess that must know the ``fake`` source type."""
    env = dict(os.environ if base is None else base)
    env["OFFBOARD_AUDIT_EXTRA_SOURCES"] = PLUGIN_REF
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("OFFBOARD_AUDIT_CONFIG", None)
    env.pop("OFFBOARD_AUDIT_DB", None)
    return env


@contextmanager
def locked_state(path: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write the state file under an exclusive lock."""
    with open(path.with_suffix(path.suffix + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(path.read_text())
            yield state
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1))
            os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_state_file(path: Path) -> dict[str, Any]:
    with open(path.with_suffix(path.suffix + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            data = json.loads(path.read_text())
            assert isinstance(data, dict)
            return data
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def account_uid(account: Mapping[str, Any]) -> str:
    return str(account.get("uid", f"uid-{account['id']}"))


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class FakeSource:
    """Reads the state file: accounts and credentials."""

    system = "fake"

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    def collect(self) -> SourceData:
        state = read_state_file(self.path)
        if state.get("source_error"):
            raise RuntimeError(state["source_error"])
        accounts = tuple(
            Account(
                source=self.name,
                system=self.system,
                account_id=a["id"],
                username=a.get("username", a["id"]),
                enabled=bool(a.get("enabled", True)),
                kind=AccountKind(a.get("kind", "human")),
                emails=tuple(a.get("emails", ())),
                attributes=tuple((k, v) for k, v in a.get("attributes", ())),
                uid=account_uid(a),
            )
            for a in state["accounts"]
        )
        creds = tuple(
            Credential(
                source=self.name,
                account_id=c["account_id"],
                credential_id=c["id"],
                kind=CredentialKind(c["kind"]),
                active=bool(c.get("active", True)),
                created_at=_dt(c.get("created_at")),
                last_used_at=_dt(c.get("last_used_at")),
                detail=c.get("detail", ""),
            )
            for c in state["credentials"]
            if c.get("exists", True)
        )
        return SourceData(accounts=accounts, credentials=creds)

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        return SourceData()


def _def(name: str, kind: CredentialKind, stage: Stage, reversible: bool) -> ActionDef:
    return ActionDef(
        name=name,
        credential_kind=kind,
        stage=stage,
        reversible=reversible,
        permissions=(f"fake:{name}",),
        description=f"fake {name}",
    )


class FakeAction:
    """One action on the state file: read, change and restore, like a real connector's spec.

    The state file is written under an exclusive lock, so ``change`` and ``restore`` check the
    account's identity in the same locked read-modify-write (a conditional write, as a system
    with one would do): that costs no extra read.
    """

    def __init__(self, revoker: FakeRevoker, definition: ActionDef) -> None:
        self.revoker = revoker
        self.definition = definition

    def read(self, target: ActionTarget) -> ResourceState:
        self.revoker.reads.append((self.definition.name, target.credential_id))
        state = read_state_file(self.revoker.path)
        if target.credential_id in state.get("unreadable", {}):
            raise ConnectionError(state["unreadable"][target.credential_id])
        return self._state_of(_find(state, target), _identity(state, target))

    def _state_of(self, c: Mapping[str, Any] | None, identity: str | None) -> ResourceState:
        if c is None or not c.get("exists", True):
            return ResourceState(exists=False, active=False, identity=identity)
        if self.definition.stage is Stage.DELETE:
            # For a delete, "active" means "still there".
            return ResourceState(
                exists=True, active=True, data=(("active", str(c.get("active", True))),), identity=identity
            )
        active = bool(c.get("active", True))
        return ResourceState(
            exists=True, active=active, data=(("status", "on" if active else "off"),), identity=identity
        )

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        cid = target.credential_id
        with locked_state(self.revoker.path) as st:
            if cid in st.get("fail", {}):
                raise RevokeError(st["fail"][cid])
            block = st.get("block", {}).pop(cid, None)
        if block == "before":
            self.revoker.wait(cid, "before")
        with locked_state(self.revoker.path) as st:
            c = self._same_target(st, target)
            if self.definition.stage is Stage.DELETE:
                c["exists"] = False
            else:
                c["active"] = False
                _set_enabled(st, target, False)
            st.setdefault("log", []).append(
                {"op": "apply", "action": self.definition.name, "credential_id": cid, "pid": os.getpid()}
            )
            lost = st.get("reset_after", {}).pop(cid, None)
        if block == "after":
            self.revoker.wait(cid, "after")
        if lost is not None:
            raise ConnectionResetError(lost)

    @property
    def restore(self) -> Restore | None:
        return self._restore if self.definition.reversible else None

    def _restore(self, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        with locked_state(self.revoker.path) as st:
            c = self._same_target(st, target)
            c["active"] = True
            _set_enabled(st, target, True)
            st.setdefault("log", []).append(
                {"op": "undo", "action": self.definition.name, "credential_id": target.credential_id}
            )
            lost = st.get("reset_after", {}).pop(target.credential_id, None)
        if lost is not None:
            raise ConnectionResetError(lost)

    def restored(self, state: ResourceState, prior: ResourceState) -> bool:
        return True

    @staticmethod
    def _same_target(st: Mapping[str, Any], target: ActionTarget) -> dict[str, Any]:
        """The credential to change, if the account is still the one planned for."""
        mismatch = identity_mismatch(
            target, ResourceState(exists=True, active=False, identity=_identity(st, target))
        )
        if mismatch is not None:
            raise TargetChanged(mismatch)
        c = _find(st, target)
        if c is None or not c.get("exists", True):
            raise RevokeError(f"{target.credential_id} no longer exists")
        return c


class FakeRevoker:
    """The fake system's revoker: one :class:`FakeAction` per declared action.

    ``reads`` lists every state read (action, credential id), for tests that count them.
    """

    actions: ClassVar[Mapping[str, ActionDef]] = MappingProxyType(
        {
            "disable_account": _def("disable_account", CredentialKind.ACCOUNT, Stage.DISABLE, True),
            "deactivate_key": _def("deactivate_key", CredentialKind.ACCESS_KEY, Stage.DISABLE, True),
            "delete_key": _def("delete_key", CredentialKind.ACCESS_KEY, Stage.DELETE, False),
            "remove_group": _def("remove_group", CredentialKind.GROUP_MEMBERSHIP, Stage.DISABLE, True),
        }
    )

    def __init__(self, path: Path, wait: Callable[[str, str], None] | None = None) -> None:
        self.path = path
        self.wait = wait or _wait_on_stdin
        self.reads: list[tuple[str, str]] = []
        self.specs: Mapping[str, ActionSpec] = MappingProxyType(
            {name: FakeAction(self, d) for name, d in self.actions.items()}
        )


class _WritesNothing:
    """``spec`` with a ``change`` and ``restore`` that write nothing."""

    def __init__(self, spec: ActionSpec) -> None:
        self.definition = spec.definition
        self.read = spec.read
        self.restored = spec.restored
        self.restore: Restore | None = self._restore if spec.restore is not None else None

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        return None

    def _restore(self, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        return None


class WritesNothingRevoker:
    """The fake revoker whose writes silently do nothing (a connector bug, or an eventually
    consistent API): only the engine's re-read can tell."""

    actions = FakeRevoker.actions

    def __init__(self, path: Path) -> None:
        self.specs: Mapping[str, ActionSpec] = {
            name: _WritesNothing(spec) for name, spec in FakeRevoker(path).specs.items()
        }


def _find(state: Mapping[str, Any], target: ActionTarget) -> dict[str, Any] | None:
    for c in state["credentials"]:
        if c["account_id"] == target.account_id and c["id"] == target.credential_id:
            assert isinstance(c, dict)
            return c
    return None


def _identity(state: Mapping[str, Any], target: ActionTarget) -> str | None:
    for a in state["accounts"]:
        if a["id"] == target.account_id:
            return account_uid(a)
    return None


def _set_enabled(state: Mapping[str, Any], target: ActionTarget, enabled: bool) -> None:
    """An account credential switches its account too."""
    if target.credential_kind is CredentialKind.ACCOUNT:
        for a in state["accounts"]:
            if a["id"] == target.account_id:
                a["enabled"] = enabled


def _wait_on_stdin(credential_id: str, when: str) -> None:
    sys.stderr.write(f"FAKE-BLOCKED {credential_id} {when}\n")
    sys.stderr.flush()
    sys.stdin.readline()


def _path(options: SourceOptions) -> Path:
    return options.file_path("state")


def make_source(options: SourceOptions, ctx: SourceContext) -> FakeSource:
    return FakeSource(options.string("name"), _path(options))


def make_revoker(options: SourceOptions, ctx: SourceContext) -> FakeRevoker:
    return FakeRevoker(_path(options))


PLUGIN = ConnectorPlugin(
    type_name="fake",
    kind=SourceKind.ACCOUNTS,
    system="fake",
    make_source=make_source,
    make_revoker=make_revoker,
    revoker_actions=FakeRevoker.actions,
    read_permissions=("read the state file",),
    options={"state": "path of the JSON state file"},
    match=MatchSpec(employee_id_attributes=("employeeNumber",), email_attributes=("mail",)),
)


# --- building a small world for tests -------------------------------------------------------


HR_HEADER = "employee_id,email,name,status,termination_date,aliases\n"


@dataclass
class FakeWorld:
    """A config file, an HR file and a fake system's state file under one folder."""

    root: Path
    db_url: str

    @property
    def config_path(self) -> Path:
        return self.root / "offboard-audit.toml"

    @property
    def state_path(self) -> Path:
        return self.root / "fake-state.json"

    @property
    def hr_path(self) -> Path:
        return self.root / "hr.csv"

    def write_hr(self, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        self.hr_path.write_text(HR_HEADER + "".join(",".join(r) + ",\n" for r in rows))

    def write_state(self, accounts: list[dict[str, Any]], credentials: list[dict[str, Any]]) -> None:
        self.state_path.write_text(json.dumps({"accounts": accounts, "credentials": credentials, "log": []}))

    def write_config(self, policy: Mapping[str, Any] | None = None) -> None:
        lines = ["[database]", f'url = "{self.db_url}"', "", "[policy]"]
        for key, value in (policy or {}).items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines += [
            "",
            "[[sources]]",
            'name = "hr"',
            'type = "hr_csv"',
            f'path = "{self.hr_path}"',
            "",
            "[[sources]]",
            'name = "fake"',
            'type = "fake"',
            f'state = "{self.state_path}"',
            "",
        ]
        self.config_path.write_text("\n".join(lines))

    def state(self) -> dict[str, Any]:
        return read_state_file(self.state_path)

    def update(self, fn: Callable[[dict[str, Any]], None]) -> None:
        with locked_state(self.state_path) as st:
            fn(st)

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120, umask: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python -m offboard_audit --config <this world's config> ARGS`` in a child process in
        :attr:`root`, the fake source type registered (:func:`fake_env`, plus ``env``), stdin
        closed; ``umask`` sets the child's (the files it creates)."""

        def set_umask() -> None:
            if umask is not None:
                os.umask(umask)

        return subprocess.run(
            [sys.executable, "-m", "offboard_audit", "--config", str(self.config_path), *args],
            cwd=self.root,
            env={**fake_env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=None if umask is None else set_umask,
        )

    def changes(self, op: str = "apply") -> list[tuple[str, str]]:
        return [(e["action"], e["credential_id"]) for e in self.state().get("log", []) if e["op"] == op]

    def credential(self, cid: str) -> dict[str, Any]:
        for c in self.state()["credentials"]:
            if c["id"] == cid:
                assert isinstance(c, dict)
                return c
        raise KeyError(cid)


def standard_world(root: Path, db_url: str, policy: Mapping[str, Any] | None = None) -> FakeWorld:
    """Two leavers (E1 alice, E2 bob), one active person (E3 carol), a protected break-glass
    account owned by E1, and one orphan account.

    E1 alice: account ``alice`` (login + access key AK1 + group g-admins) and ``breakglass``
    (login). E2 bob: account ``bob`` (login + access key AK2). E3 carol: ``carol`` (login).
    """
    world = FakeWorld(root, db_url)
    world.write_hr(
        [
            ("E1", "alice@example.com", "Alice", "terminated", "2026-01-10"),
            ("E2", "bob@example.com", "Bob", "terminated", "2026-01-12"),
            ("E3", "carol@example.com", "Carol", "active", ""),
        ]
    )

    def acct(aid: str, emp: str | None) -> dict[str, Any]:
        attrs = [["employeeNumber", emp]] if emp else []
        return {"id": aid, "username": aid, "enabled": True, "attributes": attrs}

    world.write_state(
        [
            acct("alice", "E1"),
            acct("breakglass", "E1"),
            acct("bob", "E2"),
            acct("carol", "E3"),
            acct("ghost", None),
        ],
        [
            {"account_id": "alice", "id": "alice", "kind": "account"},
            {"account_id": "alice", "id": "AK1", "kind": "access_key"},
            {"account_id": "alice", "id": "group/g-admins", "kind": "group_membership", "detail": "g-admins"},
            {"account_id": "breakglass", "id": "breakglass", "kind": "account"},
            {"account_id": "bob", "id": "bob", "kind": "account"},
            {"account_id": "bob", "id": "AK2", "kind": "access_key"},
            {"account_id": "carol", "id": "carol", "kind": "account"},
            {"account_id": "ghost", "id": "ghost", "kind": "account"},
        ],
    )
    world.write_config({"protected": ["fake:breakglass"], **(policy or {})})
    return world


def cli(world: FakeWorld, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """:meth:`FakeWorld.run` as (exit code, stdout, stderr)."""
    done = world.run(*args, env=env)
    return done.returncode, done.stdout, done.stderr
