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


def rehire_alice(env: Env) -> None:
    """The HR webhook's rehire (without undo_on_rehire) marks alice active in the stored people."""
    pipeline = Pipeline(env.config, env.store, SourceContext(base_dir=env.config.base_dir))
    update = pipeline.update_person(
        PersonChange(
            "E1", PersonStatus.ACTIVE, None, effective_at=NOW, origin="webhook evt-1 (employee.rehired)"
        ),
        "job:j-1",
    )
    assert update.applied


def test_revoke_after_a_rehire_event_leaves_the_rehired_person_alone(env: Env) -> None:
    env.audit()
    # No audit has run since the rehire.
    rehire_alice(env)
    report = env.engine().revoke(NOW + timedelta(minutes=5), apply=True)
    touched = {o.credential_id for o in report.outcomes}
    assert touched == {"bob", "AK2"}
    assert {c for _, c in env.world.changes()} == {"bob", "AK2"}


def test_an_auto_pass_holds_a_rehired_persons_findings_by_its_own_runs_verdict_not_the_stored_one(
    env: Env,
) -> None:
    # The pass is given a run whose HR read was good. Alice is rehired after it (the HR webhook),
    # and the newest audit's HR read failed since (an empty export), so the stored verdict is a
    # tripped circuit breaker. That verdict is not this pass's: the people as stored now (Alice
    # active) still hold her findings back, and only Bob loses access.
    result = env.audit()
    assert result.circuit_breaker is None
    rehire_alice(env)
    env.world.write_hr([])
    later = NOW + timedelta(hours=1)
    assert env.audit(later).circuit_breaker is not None
    engine = env.engine(later)
    assert engine.stored_breaker() is not None
    [alice] = env.store.people_with_keys([("id", "E1")])
    assert alice.status is PersonStatus.ACTIVE

    report = engine.auto_revoke(result, later)

    assert report.refused is None
    assert {o.credential_id for o in report.outcomes} == {"bob", "AK2"}
    assert {c for _, c in env.world.changes()} == {"bob", "AK2"}
    assert report.plan is not None
    held = {h.credential_id: h.reason for h in report.plan.held}
    assert {"alice", "AK1", "group/g-admins"} <= held.keys()
    assert all("no longer departed" in held[c] for c in ("alice", "AK1", "group/g-admins"))
