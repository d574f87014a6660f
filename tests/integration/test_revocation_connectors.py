"""The real connectors' revokers (AWS via moto, LDAP via ldap3's mock, Google Cloud fakes) in the engine.

The demo organisation wires all three in process; this proves the engine drives them end to
end: apply and verify, nothing left to do afterwards, and undo restores what was changed.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from offboard_audit.core.chain_verify import verify_chain
from offboard_audit.core.protocols import Revoker
from offboard_audit.demo import demo_org
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.revocation import RevocationEngine
from offboard_audit.storage.actions import iter_events
from offboard_audit.storage.store import Store


def test_demo_connectors_revoke_verify_stay_idempotent_and_undo(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with demo_org(now, f"sqlite:///{tmp_path / 'demo.db'}", tmp_path) as org:
        store = Store.open(org.config.database_url)
        first = Pipeline(org.config, store, org.ctx).run(now)
        assert first.circuit_breaker is None
        engine = RevocationEngine(org.config, store, org.ctx, "test")
        report = engine.revoke(now, apply=True, max_actions=200)
        assert report.refused is None
        by_source = Counter(o.source for o in report.outcomes)
        assert {s.name for s in org.config.account_sources} <= set(by_source), by_source
        assert {o.status for o in report.outcomes} == {"applied"}, [
            (o.credential_id, o.error) for o in report.outcomes if o.status != "applied"
        ]
        # Protected break-glass accounts are held, never acted on.
        assert report.plan is not None
        assert not any("breakglass" in o.account for o in report.outcomes)

        later = datetime.now(UTC)
        Pipeline(org.config, store, org.ctx).run(later)
        revoked = {f.finding_id for f in store.list_findings(["revoked"])}
        assert {o.finding_id for o in report.outcomes} <= revoked
        again = engine.revoke(later, apply=True, max_actions=200)
        assert again.refused is None and again.outcomes == ()

        person = next(o.person for o in report.outcomes if o.person and o.reversible)
        undo = engine.undo_person(person, later)
        mine = [o for o in report.outcomes if o.person == person]
        restored = {o.undo_of for o in undo.outcomes if o.status == "restored"}
        assert restored == {o.action_id for o in mine if o.reversible}
        after_undo = Pipeline(org.config, store, org.ctx).run(datetime.now(UTC))
        reopened = {f.finding_id for f in after_undo.findings if f.status.value == "open"}
        assert {o.finding_id for o in mine if o.reversible} <= reopened
        assert verify_chain(iter_events(store)).ok
        store.engine.dispose()


def test_every_connectors_specs_carry_its_declared_definitions_and_a_restore_exactly_when_reversible(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    with demo_org(now, f"sqlite:///{tmp_path / 'demo.db'}", tmp_path) as org:
        store = Store.open(org.config.database_url)
        engine = RevocationEngine(org.config, store, org.ctx, "test")
        sources = [s for s in org.config.account_sources if s.plugin.make_revoker is not None]
        assert {s.plugin.type_name for s in sources} >= {"aws_iam", "ldap", "gcp_iam"}
        for source in sources:
            revoker = engine.revoker(source.name)
            assert isinstance(revoker, Revoker)
            # The plan and `config check` read the class's definitions; the engine runs the specs.
            assert {n: s.definition for n, s in revoker.specs.items()} == dict(type(revoker).actions)
            assert set(revoker.specs) == set(source.plugin.revoker_actions)
            for name, spec in revoker.specs.items():
                assert spec.definition.name == name
                assert (spec.restore is not None) == spec.definition.reversible, name
        store.engine.dispose()
