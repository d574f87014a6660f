"""What a leaver left behind for other identities in a real OpenBao server: an AppRole secret-id
(a login for the role) and a PKI certificate with its private key. Both are
``persistence-left-by-leaver`` until destroyed or revoked (or expired); the log shows their
accessor and serial HMAC'd, matched through the audit device's own hash."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from offboard_audit.core.records import FindingStatus
from tests.connectors.vault.conftest import VaultWorld


def _left_behind(w: VaultWorld, user: str) -> dict[str, Any]:
    c = w.root
    if "approle/" not in c.sys.list_auth_methods()["data"]:
        c.sys.enable_auth_method("approle")
        c.write_data("auth/approle/role/ci", data={"token_policies": ["default"]})
        c.sys.enable_secrets_engine("pki")
        c.write_data("pki/root/generate/internal", data={"common_name": "example.com", "ttl": "87600h"})
        c.write_data("pki/roles/web", data={"allowed_domains": "example.com", "allow_subdomains": True})
    person = w.login(user)
    made = person.write_data("auth/approle/role/ci/secret-id")
    w.seen(made)
    cert = person.write_data("pki/issue/web", data={"common_name": "api.example.com", "ttl": "24h"})
    w.seen(cert)

    def hashed(value: str) -> str:
        return str(c.sys.calculate_hash("main", value)["data"]["hash"])

    accessor = made["data"]["secret_id_accessor"]
    serial = cert["data"]["serial_number"]
    return {
        "accessor": accessor,
        "serial": serial,
        "secret_id": f"auth/approle/role/ci/secret-id/{hashed(accessor)}",
        "cert": f"pki/cert/{hashed(serial)}",
    }


def test_a_leavers_secret_id_and_certificate_are_persistence_until_destroyed_and_revoked(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    left = _left_behind(w, "alice")
    _left_behind(w, "bob")  # an active person's are nobody's business
    result = w.run()
    assert result.status.value == "done", result.sources
    found = {k: f for k, f in w.exposure().items() if f.status is FindingStatus.OPEN}
    assert set(found) == {
        ("persistence-left-by-leaver", "E1", left["secret_id"]),
        ("persistence-left-by-leaver", "E1", left["cert"]),
    }
    secret_id = found[("persistence-left-by-leaver", "E1", left["secret_id"])]
    assert secret_id.credential.kind.value == "service_account_key"  # type: ignore[union-attr]
    # The reason names the accessor as the server lists it (matched through the audit hash).
    assert f"secret-id accessor {left['accessor']} of AppRole role ci" in secret_id.reason
    cert = found[("persistence-left-by-leaver", "E1", left["cert"])]
    assert cert.credential.kind.value == "signing_certificate"  # type: ignore[union-attr]
    assert "not revoked" in cert.reason and [a.action for a in cert.exposure] == ["pki issue"]

    w.root.write_data(
        "auth/approle/role/ci/secret-id-accessor/destroy", data={"secret_id_accessor": left["accessor"]}
    )
    w.root.write_data("pki/revoke", data={"serial_number": left["serial"]})
    w.run()
    stored = w.exposure()
    assert stored[("persistence-left-by-leaver", "E1", left["secret_id"])].status is FindingStatus.RESOLVED
    assert stored[("persistence-left-by-leaver", "E1", left["cert"])].status is FindingStatus.RESOLVED


def _as_written_under_another_salt(w: VaultWorld, accessor: str) -> str:
    """Rewrite the log as a file audit device enabled before the current one wrote it: Vault
    salts each device's HMAC anew when the device is enabled, so the accessor shows another
    value (same length, rewritten in place). Returns that value."""
    current = str(w.root.sys.calculate_hash("main", accessor)["data"]["hash"]).encode()
    older = (
        "hmac-sha256:" + hmac.new(b"salt of the device before", accessor.encode(), hashlib.sha256).hexdigest()
    )
    log = w.bao.audit_log
    text = log.read_bytes()
    assert current in text
    with open(log, "r+b") as fh:
        fh.write(text.replace(current, older.encode()))
    return older


def test_a_leavers_secret_id_the_role_still_lists_under_another_audit_salt_is_unknown_never_gone(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    left = _left_behind(w, "alice")
    older = _as_written_under_another_salt(w, left["accessor"])
    secret_id = f"auth/approle/role/ci/secret-id/{older}"
    result = w.run()
    run = next(s for s in result.sources if s.name == "vault/exposure")
    # Not resolved, not read clean: the AppRole mount fails, naming the secret-id and why.
    assert [f.scope for f in run.failed_scopes] == ["exposure:auth/approle"]
    assert secret_id in run.failed_scopes[0].error and "another salt" in run.failed_scopes[0].error
    assert result.status.value == "failed_sources"
    assert w.api is not None and ("write", "auth/approle/role/ci/secret-id-accessor/lookup") in w.api.calls

    # Destroyed; the role's only secret-id now is one made later: none can be hers, whatever the salt.
    w.root.write_data(
        "auth/approle/role/ci/secret-id-accessor/destroy", data={"secret_id_accessor": left["accessor"]}
    )
    w.seen(w.login("bob").write_data("auth/approle/role/ci/secret-id"))
    again = next(s for s in w.run().sources if s.name == "vault/exposure")
    assert again.failed_scopes == ()
    assert ("persistence-left-by-leaver", "E1", secret_id) not in w.exposure()
