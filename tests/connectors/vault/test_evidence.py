"""The evidence pack's "Secrets this person could carry away", from a real OpenBao audit: Alice
read a KV secret (never rotated) and exported a transit key that the tool rotated
(``policy.auto_rotate_secrets``) and an operator then retired (``min_decryption_version``)."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from sqlalchemy import text

from offboard_audit.report.evidence import collect_evidence
from offboard_audit.report.evidence_render import evidence_html, evidence_json
from offboard_audit.storage.actions import iter_events
from tests.connectors.vault.conftest import VaultWorld

HOSTILE = "app/<img src=x onerror=alert(1)>"


def _story(w: VaultWorld) -> dict[str, Any]:
    w.root.secrets.kv.v2.create_or_update_secret("app/db", secret={"password": "s3cr3t"})
    w.root.secrets.kv.v2.create_or_update_secret(HOSTILE, secret={"v": "x"})
    alice = w.login("alice")
    ids = {"read": w.seen(alice.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True))}
    ids["hostile"] = w.seen(alice.secrets.kv.v2.read_secret_version(HOSTILE, raise_on_deleted_version=True))
    alice.write_data("transit/keys/signing-key", data={"type": "ecdsa-p256", "exportable": True})
    ids["export"] = w.seen(alice.read("transit/export/signing-key/signing-key"))
    w.root.write_data("transit/keys/signing-key/config", data={"auto_rotate_period": "720h"})
    policy = {"auto_rotate_secrets": True}
    w.run(policy=policy)
    report = w.engine(policy=policy).revoke(datetime.now(UTC), apply=True, person="E1")
    ids["rotate"] = next(o.action_id for o in report.outcomes if o.action == "rotate_transit_key")
    w.root.write_data("transit/keys/signing-key/config", data={"min_decryption_version": 2})
    w.run(policy=policy)
    return ids


def _section(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["secret"]["id"]: x for x in data["secrets_could_carry_away"]}


def test_each_secret_says_how_it_was_exposed_its_rotation_when_and_by_whom_and_who_rotates(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    ids = _story(w)
    store = w.store()
    data = evidence_json(collect_evidence(store, "E1", datetime.now(UTC)))
    section = _section(data)
    assert set(section) == {"secret/app/db", f"secret/{HOSTILE}", "transit/signing-key"}

    kv = section["secret/app/db"]
    assert (kv["finding"]["status"], kv["finding"]["severity"]) == ("open", "high")
    assert [(a["how"], a["event_id"], a["action"]) for a in kv["exposure"]] == [
        ("read", ids["read"], "kv read")
    ]
    assert kv["rotation"]["state"] == "not rotated since the last access"
    assert kv["rotation"]["rotated_at"] is None and kv["rotation"]["by_tool"] is None
    assert kv["rotate_owner"] == {"email": "boss@example.com", "via": "manager"}
    assert [r["id"] for r in kv["references"]] == ["PCI DSS 8.2.5"]

    key = section["transit/signing-key"]
    assert (key["finding"]["status"], key["finding"]["severity"]) == ("revoked", "critical")
    assert [(a["how"], a["action"]) for a in key["exposure"]] == [
        ("changed-access", "transit create key (exportable=true)"),
        ("exported", "transit export signing-key (versions 1)"),
    ]
    assert key["exposure"][-1]["event_id"] == ids["export"]
    outcome = next(e for e in iter_events(store) if e.action_id == ids["rotate"] and e.kind == "outcome")
    rotation = key["rotation"]
    assert rotation["state"] == "rotated" and rotation["task"] == "rotate"
    assert rotation["rotated_at"] == outcome.at.isoformat()
    assert rotation["rotated_at_from"] == "audit log: the tool's rotate action"
    assert rotation["by_tool"]["action_id"] == ids["rotate"] and rotation["by_tool"]["actor"] == "test"
    assert rotation["closed_at"] is not None
    # The inventory: version 2 is current and the oldest still usable.
    assert rotation["current_version_created_at"] == rotation["oldest_usable_version_created_at"]
    assert [r["id"] for r in key["references"]] == ["PCI DSS 3.7.5", "PCI DSS 8.2.5"]

    summary = data["summary"]
    assert (summary["secrets_could_carry_away"], summary["secrets_could_carry_away_open"]) == (3, 2)
    # Her account credentials are the credentials table; the secrets are not in it.
    kinds = {c["kind"] for a in data["accounts"] for c in a["credentials"]}
    assert kinds == {"account", "password", "access_key"}
    assert "carry_away" in data["basis"]


def test_the_tools_rotation_time_comes_from_the_chain_not_the_editable_actions_table(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    ids = _story(w)
    store = w.store()
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE actions SET updated_at = :t, actor = 'cli:mallory' WHERE action_id = :a"),
            {"t": "2020-01-01 00:00:00.000000", "a": ids["rotate"]},
        )
    data = evidence_json(collect_evidence(store, "E1", datetime.now(UTC)))
    rotation = _section(data)["transit/signing-key"]["rotation"]
    outcome = next(e for e in iter_events(store) if e.action_id == ids["rotate"] and e.kind == "outcome")
    assert rotation["rotated_at"] == outcome.at.isoformat() and rotation["by_tool"]["actor"] == "test"
    assert {(d["action_id"], d["field"]) for d in data["discrepancies"]} == {
        (ids["rotate"], "actor"),
        (ids["rotate"], "updated_at"),
    }


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_html_section_shows_names_from_the_audit_log_as_text_with_the_citations(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    ids = _story(w)
    page = evidence_html(collect_evidence(w.store(), "E1", datetime.now(UTC)))
    parsed = _Page()
    parsed.feed(page)
    assert "img" not in parsed.tags and "script" not in parsed.tags
    body = "".join(parsed.text)
    assert "Secrets this person could carry away" in body
    assert f"secret/{HOSTILE}" in body and ids["hostile"] in body and ids["export"] in body
    assert "PCI DSS 3.7.5: keys are retired or replaced" in body
    assert "PCI DSS 8.2.5: access for terminated users is immediately revoked" in body
    assert page.index("Content-Security-Policy") < page.index("<style>")
