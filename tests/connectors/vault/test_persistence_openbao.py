"""What a leaver left behind for other identities in a real OpenBao server: an AppRole secret-id
(a login for the role) and a PKI certificate with its private key. Both are
``persistence-left-by-leaver`` until destroyed or revoked (or expired); the log shows their
accessor and serial HMAC'd, matched through the audit device's own hash."""

from __future__ import annotations

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
