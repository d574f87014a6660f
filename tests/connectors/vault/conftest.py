"""A small organisation in a real OpenBao server, and full audits of it through the pipeline.

``vault_world`` gives a clean server (``tests/support/openbao.py``) with: userpass at
``userpass/``, KV v2 at ``secret/``, transit at ``transit/``; a policy ``staff`` that can read
and write secrets and create and export transit keys; and people Alice (E1, leaving) and Bob
(E2, active), each an entity with metadata ``email`` / ``employee_id``, a userpass user and its
alias. Tests act as them through real logins (``login``); every call they want in the audit
log is waited for by its request id (``world.seen``), never by sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac
import pytest

from connectors.vault import VaultApi
from connectors.vault.settings import parse_settings
from offboard_audit.config import Config, build_config
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Finding
from offboard_audit.core.runs import RunResult
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.revocation import RevocationEngine
from offboard_audit.storage.store import Store
from tests.support.openbao import OpenBao

STAFF_POLICY = """
path "secret/*" { capabilities = ["create", "read", "update", "list"] }
path "kv1/*" { capabilities = ["create", "read", "update", "list"] }
path "transit/*" { capabilities = ["create", "read", "update", "list"] }
path "auth/approle/role/+/secret-id" { capabilities = ["update"] }
path "pki/issue/*" { capabilities = ["update"] }
"""
LEFT = datetime.now(UTC) - timedelta(days=1)
HR = (
    "employee_id,email,name,status,termination_date,aliases,manager_email\n"
    f"E1,alice@example.com,Alice Leaver,terminated,{LEFT.isoformat()},,boss@example.com\n"
    "E2,bob@example.com,Bob Active,active,,,\n"
)
EXPOSURE_RULES = ("secret-exposed-to-leaver", "persistence-left-by-leaver")


class RecordingApi(VaultApi):
    """The connector's own client, recording every path it calls (the tests' call log)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, str]] = []

    def read(self, path: str) -> dict[str, Any] | None:
        self.calls.append(("read", path))
        return super().read(path)

    def list(self, path: str) -> list[str]:
        self.calls.append(("list", path))
        return super().list(path)

    def list_info(self, path: str) -> dict[str, Any]:
        self.calls.append(("list", path))
        return super().list_info(path)

    def write(self, path: str, data: Any = None) -> dict[str, Any] | None:
        self.calls.append(("write", path))
        return super().write(path, data)

    def delete(self, path: str) -> None:
        self.calls.append(("delete", path))
        super().delete(path)


@dataclass
class VaultWorld:
    bao: OpenBao
    tmp: Path
    entities: dict[str, str] = field(default_factory=dict)
    userpass_accessor: str = ""
    api: RecordingApi | None = None

    @property
    def root(self) -> Any:
        return self.bao.client()

    # --- people -------------------------------------------------------------------------

    def person(self, user: str, email: str, employee_id: str) -> str:
        """An entity with metadata, a userpass user and the alias that joins them."""
        c = self.root
        c.auth.userpass.create_or_update_user(user, password=f"pw-{user}", policies=["staff"])
        entity = c.secrets.identity.create_or_update_entity(
            name=user, metadata={"email": email, "employee_id": employee_id}
        )["data"]["id"]
        c.secrets.identity.create_or_update_entity_alias(
            name=user, canonical_id=entity, mount_accessor=self.userpass_accessor
        )
        self.entities[user] = entity
        return str(entity)

    def login(self, user: str) -> Any:
        client = hvac.Client(url=self.bao.address)
        client.auth.userpass.login(user, f"pw-{user}")
        return client

    def seen(self, response: Any) -> str:
        """The request id of ``response``, once its response entry is in the audit log."""
        request_id = str(response["request_id"])
        self.bao.wait_for_response(request_id)
        return request_id

    # --- audits ---------------------------------------------------------------------------

    def config(self, policy: dict[str, Any] | None = None, **vault: Any) -> Config:
        source = {
            "name": "vault",
            "type": "vault",
            "url": self.bao.address,
            "token_env": "BAO_TOKEN",
            "audit_log": str(self.bao.audit_log),
            **vault,
        }
        raw = {
            "database": {"url": f"sqlite:///{self.tmp / 'audit.db'}"},
            "policy": {"max_new_terminations": 1.0, **(policy or {})},
            "sources": [{"name": "hr", "type": "hr_csv", "path": str(self.tmp / "hr.csv")}, source],
        }
        return build_config(raw, base_dir=self.tmp, env={"BAO_TOKEN": self.bao.token})

    def ctx(self) -> SourceContext:
        return SourceContext(self.tmp, env={"BAO_TOKEN": self.bao.token}, clients={"vault": self.api})

    def store(self) -> Store:
        return Store.open(f"sqlite:///{self.tmp / 'audit.db'}")

    def run(self, policy: dict[str, Any] | None = None, **vault: Any) -> RunResult:
        config = self.config(policy, **vault)
        return Pipeline(config, self.store(), self.ctx()).run(datetime.now(UTC))

    def engine(self, policy: dict[str, Any] | None = None, **vault: Any) -> RevocationEngine:
        config = self.config(policy, **vault)
        return RevocationEngine(config, self.store(), self.ctx(), "test")

    def exposure(self) -> dict[tuple[str, str, str], Finding]:
        """Stored exposure findings by (rule, employee id, secret id)."""
        out = {}
        for f in self.store().list_findings():
            if f.rule.value in EXPOSURE_RULES:
                assert f.person is not None and f.credential is not None
                out[(f.rule.value, f.person.employee_id, f.credential.credential_id)] = f
        return out


@pytest.fixture
def vault_world(openbao: OpenBao, tmp_path: Path) -> Iterator[VaultWorld]:
    c = openbao.client()
    c.sys.create_or_update_policy("staff", STAFF_POLICY)
    c.sys.enable_auth_method("userpass")
    c.sys.enable_secrets_engine("transit")
    accessor = c.sys.list_auth_methods()["data"]["userpass/"]["accessor"]
    (tmp_path / "hr.csv").write_text(HR)
    world = VaultWorld(openbao, tmp_path, userpass_accessor=accessor)
    world.person("alice", "alice@example.com", "E1")
    world.person("bob", "bob@example.com", "E2")
    settings = parse_settings(world.config().source("vault").options, {"BAO_TOKEN": openbao.token})
    world.api = RecordingApi(settings, openbao.client())
    yield world
