"""A person HR no longer lists as departed (rehired, termination postponed) loses nothing more:
findings keep the person as they were when made (a revoked one never changes again), so the
engine plans from the people as HR says now (the fake connector, SQLite, the real pipeline and
engine)."""

from __future__ import annotations

from datetime import timedelta

from offboard_audit.core.people import PersonChange
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import PersonStatus
from offboard_audit.engine.pipeline import Pipeline
from tests.support.revocation import NOW, Env, env

__all__ = ["env"]

REHIRED_HR = [
    ("E1", "alice@example.com", "Alice", "active", ""),
    ("E2", "bob@example.com", "Bob", "terminated", "2026-01-12"),
    ("E3", "carol@example.com", "Carol", "active", ""),
]


def test_a_rehired_persons_key_is_not_deleted_once_delete_after_has_passed(env: Env) -> None:
    env.reload({"delete_after": "7d"})
    env.audit()
    first = env.engine().revoke(NOW, apply=True)
    assert {(o.credential_id, o.status) for o in first.outcomes} >= {("AK1", "applied"), ("AK2", "applied")}
    env.audit(NOW + timedelta(hours=1))  # both keys revoked: their findings are closed as revoked
    # Alice is rehired and an administrator turns her key back on for her.
    env.world.write_hr(REHIRED_HR)
    env.world.update(
        lambda st: next(c for c in st["credentials"] if c["id"] == "AK1").update({"active": True})
    )
    late = NOW + timedelta(days=8)
    env.audit(late)
    report = env.engine(late).revoke(late, apply=True)
    # Bob is still gone: his key is deleted; Alice's, in use again, is not touched.
    assert [(o.credential_id, o.action, o.status) for o in report.outcomes] == [
        ("AK2", "delete_key", "applied")
    ]
    assert env.world.credential("AK1").get("exists", True) is True
    assert env.world.credential("AK1").get("active") is True
    assert report.plan is not None
    held = [h for h in report.plan.held if h.credential_id == "AK1"]
    assert held and "no longer departed" in held[0].reason


def test_revoke_after_a_rehire_event_leaves_the_rehired_person_alone(env: Env) -> None:
    env.audit()
    # The HR webhook's rehire (without undo_on_rehire) marks alice active; no audit has run since.
    pipeline = Pipeline(env.config, env.store, SourceContext(base_dir=env.config.base_dir))
    update = pipeline.update_person(
        PersonChange(
            "E1", PersonStatus.ACTIVE, None, effective_at=NOW, origin="webhook evt-1 (employee.rehired)"
        ),
        "job:j-1",
    )
    assert update.applied
    report = env.engine().revoke(NOW + timedelta(minutes=5), apply=True)
    touched = {o.credential_id for o in report.outcomes}
    assert touched == {"bob", "AK2"}
    assert {c for _, c in env.world.changes()} == {"bob", "AK2"}
