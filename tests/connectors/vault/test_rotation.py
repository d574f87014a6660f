"""Rotate tasks and ``policy.auto_rotate_secrets`` for transit keys, against a real OpenBao server.

Nothing is rotated by default: the plan lists a rotate task per exposed secret, with its owner.
With ``auto_rotate_secrets`` the plan rotates only keys whose own ``auto_rotate_period`` is set
(the key's config opts in), through the engine: dry run first, verified by re-reading the key,
never twice. Rotation alone does not end the exposure: older versions stay usable until
``min_decryption_version`` is raised, which the task names.
"""

from __future__ import annotations

from datetime import UTC, datetime

from offboard_audit.core.records import FindingStatus
from tests.connectors.vault.conftest import VaultWorld


def _exports(w: VaultWorld) -> None:
    """Alice exports two exportable keys; only ``auto-key`` has an auto_rotate_period."""
    alice = w.login("alice")
    for name in ("auto-key", "manual-key"):
        alice.write_data(f"transit/keys/{name}", data={"type": "ecdsa-p256", "exportable": True})
        w.seen(alice.read(f"transit/export/signing-key/{name}"))
    w.root.write_data("transit/keys/auto-key/config", data={"auto_rotate_period": "720h"})


def _latest(w: VaultWorld, name: str) -> int:
    return int(w.root.read(f"transit/keys/{name}")["data"]["latest_version"])


def test_by_default_the_plan_lists_rotate_tasks_naming_min_decryption_version_and_rotates_nothing(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    _exports(w)
    w.run()
    report = w.engine().revoke(datetime.now(UTC), apply=True, person="E1")
    assert "rotate_transit_key" not in {o.action for o in report.outcomes}
    assert _latest(w, "auto-key") == 1 and _latest(w, "manual-key") == 1
    assert report.plan is not None
    tasks = {(t.task, t.object_id, t.owner.email, t.auto) for t in report.plan.tasks}
    assert tasks == {
        ("rotate", "transit/auto-key", "boss@example.com", False),
        ("rotate", "transit/manual-key", "boss@example.com", False),
    }
    assert all("min_decryption_version=1" in t.detail for t in report.plan.tasks)


def test_auto_rotate_rotates_only_keys_that_opt_in_once_and_the_finding_stays_open_until_min_version(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    _exports(w)
    policy = {"auto_rotate_secrets": True}
    w.run(policy=policy)
    engine = w.engine(policy=policy)

    dry = engine.revoke(datetime.now(UTC), apply=False, person="E1")
    rotations = [
        (o.action, o.credential_id, o.status) for o in dry.outcomes if o.action == "rotate_transit_key"
    ]
    assert rotations == [("rotate_transit_key", "transit/auto-key", "dry-run")]
    assert _latest(w, "auto-key") == 1

    applied = engine.revoke(datetime.now(UTC), apply=True, person="E1")
    rotated = [
        (o.credential_id, o.status, o.reversible)
        for o in applied.outcomes
        if o.action == "rotate_transit_key"
    ]
    assert rotated == [("transit/auto-key", "applied", False)]
    assert _latest(w, "auto-key") == 2 and _latest(w, "manual-key") == 1
    assert applied.plan is not None
    assert {t.object_id for t in applied.plan.tasks if t.auto} == {"transit/auto-key"}

    # The next audit still sees version 1 usable: the exposure is open, and not rotated again.
    w.run(policy=policy)
    key = ("secret-exposed-to-leaver", "E1", "transit/auto-key")
    assert w.exposure()[key].status is FindingStatus.OPEN
    again = engine.revoke(datetime.now(UTC), apply=True, person="E1")
    assert [o.status for o in again.outcomes if o.action == "rotate_transit_key"] in ([], ["noop"])
    assert _latest(w, "auto-key") == 2
    w.root.write_data("transit/keys/auto-key/config", data={"min_decryption_version": 2})
    w.run(policy=policy)
    # Closed, and counted as closed by the tool's own (rotate) action.
    assert w.exposure()[key].status is FindingStatus.REVOKED
