"""The Google Cloud part of ``offboard-audit demo``."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

from connectors.gcp_iam import PLUGIN, GcpIamRevoker, GcpIamSource
from offboard_audit.core.actions import ActionTarget, identity_mismatch
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import AccountKind, CredentialKind, Person, PersonStatus
from offboard_audit.engine.steps import read_state

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _people() -> list[Person]:
    def t(day: str) -> datetime:
        return datetime.fromisoformat(day).replace(tzinfo=UTC)

    return [
        Person("E1001", "alice@example.com", "Alice", PersonStatus.ACTIVE),
        Person("E1002", "bob@example.com", "Bob", PersonStatus.TERMINATED, t("2026-09-30T17:00:00")),
        Person(
            "E1003",
            "carol@example.com",
            "Carol",
            PersonStatus.TERMINATED,
            t("2026-06-15"),
            aliases=("cgone", "carol.g@corp.example.com"),
        ),
        Person("E1007", "grace@example.com", "Grace", PersonStatus.TERMINATED, t("2026-08-01")),
    ]


def _connectable(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def test_demo_seeds_a_leavers_ci_key_created_and_used_after_she_left(tmp_path: Path) -> None:
    assert PLUGIN.demo is not None
    part = PLUGIN.demo(_people(), NOW)
    try:
        source = PLUGIN.make_source(SourceOptions(part.source), SourceContext(base_dir=tmp_path))
        assert isinstance(source, GcpIamSource)
        bulk = source.collect()
        ci = next(a for a in bulk.accounts if a.account_id.startswith("ci-deployer@"))
        assert ci.attribute_values("owner") == ("grace@example.com",)
        detail = source.detail([ci])
        left = datetime(2026, 8, 1, tzinfo=UTC)
        keys = [c for c in detail.credentials if c.kind is CredentialKind.SERVICE_ACCOUNT_KEY]
        assert len(keys) == 2
        late = [k for k in keys if k.created_at and k.created_at > left]
        assert len(late) == 1 and late[0].last_used_at is not None and late[0].last_used_at > left
        by_id = {a.account_id: a for a in bulk.accounts}
        # A binding of someone HR does not know, an unowned service account, a revivable deleted member.
        assert "projects/demo-prod/user:mallory.contractor@example.com" in by_id
        legacy = next(a for a in bulk.accounts if a.account_id.startswith("legacy-etl@"))
        assert legacy.kind is AccountKind.SERVICE and legacy.attribute_values("owner") == ()
        assert by_id["projects/demo-data/user:carol@example.com"].enabled is False
        assert "projects/demo-data/user:carol.g@corp.example.com" in by_id
        source.close()
    finally:
        part.close()
    # close() stops both servers.
    assert not _connectable(part.source["iam_endpoint"])
    assert not _connectable(part.source["resource_manager_endpoint"].removeprefix("http://"))


def test_demo_accounts_carry_their_identities_and_its_revoker_reads_them(tmp_path: Path) -> None:
    assert PLUGIN.demo is not None and PLUGIN.make_revoker is not None
    part = PLUGIN.demo(_people(), NOW)
    try:
        options = SourceOptions(part.source)
        source = PLUGIN.make_source(options, SourceContext(base_dir=tmp_path))
        revoker = PLUGIN.make_revoker(options, SourceContext(base_dir=tmp_path))
        assert isinstance(source, GcpIamSource) and isinstance(revoker, GcpIamRevoker)
        bulk = source.collect()
        by_id = {a.account_id: a for a in bulk.accounts}
        assert all(a.uid for a in bulk.accounts), [a.account_id for a in bulk.accounts if not a.uid]
        services = [a for a in bulk.accounts if "@" in a.account_id and "/" not in a.account_id]
        assert services and all(a.uid.isdigit() for a in services)  # uniqueIds
        assert len({a.uid for a in services}) == len(services)
        assert by_id["projects/demo-prod/user:grace@example.com"].uid == "user:grace@example.com"
        accounts = {a.account_id: a for a in bulk.accounts}
        for cred in bulk.credentials:
            action = {
                CredentialKind.IAM_BINDING: "remove_binding",
                CredentialKind.SERVICE_ACCOUNT_KEY: "disable_key",
                CredentialKind.ACCOUNT: "disable_service_account",
            }[cred.kind]
            account = accounts[cred.account_id]
            target = ActionTarget(
                source=account.source,
                system=account.system,
                account_id=account.account_id,
                username=account.username,
                credential_id=cred.credential_id,
                credential_kind=cred.kind,
                scope=cred.scope,
                account_uid=account.uid,
            )
            # What the engine checks before acting: the identity read now is the one recorded.
            assert identity_mismatch(target, read_state(revoker, action, target)) is None, cred.credential_id
        revoker.close()
        source.close()
    finally:
        part.close()
