"""Rotate tasks for KV secrets (issue 14), against a real OpenBao server: a KV v2 secret a leaver
read gets a rotate task in the plan, owned by her manager, alongside a transit key's; nothing is
written to the secret by revoking; a new version written after the read ends the task.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.connectors.vault.conftest import VaultWorld


def _kv_version(w: VaultWorld, path: str) -> int:
    meta = w.root.secrets.kv.v2.read_secret_metadata(path)["data"]
    return int(meta["current_version"])


def test_the_plan_lists_a_rotate_task_for_a_kv_secret_the_leaver_read(vault_world: VaultWorld) -> None:
    w = vault_world
    w.root.secrets.kv.v2.create_or_update_secret("app/db", secret={"password": "s3cr3t"})
    w.root.secrets.kv.v2.create_or_update_secret("app/unread", secret={"password": "other"})
    alice = w.login("alice")
    w.seen(alice.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True))
    alice.write_data("transit/keys/signing-key", data={"type": "ecdsa-p256", "exportable": True})
    w.seen(alice.read("transit/export/signing-key/signing-key"))
    w.run()

    report = w.engine().revoke(datetime.now(UTC), apply=True, person="E1")
    assert report.plan is not None
    tasks = {(t.task, t.object_id, t.owner.email, t.auto) for t in report.plan.tasks}
    assert tasks == {
        ("rotate", "secret/app/db", "boss@example.com", False),
        ("rotate", "transit/signing-key", "boss@example.com", False),
    }
    # Listing the task changes nothing: the secret is still at the version she read.
    assert _kv_version(w, "app/db") == 1

    # Someone rotates it (a new version after her read): the next plan has no task for it.
    w.root.secrets.kv.v2.create_or_update_secret("app/db", secret={"password": "n3w"})
    w.run()
    again = w.engine().revoke(datetime.now(UTC), apply=False, person="E1")
    assert again.plan is not None
    assert {t.object_id for t in again.plan.tasks} == {"transit/signing-key"}
