"""Engine behaviour no other test pinned down (issue 10, mutation survivors): undoing an action
that does not exist, what a dry run says about each planned action, and a source whose scopes
fail in more than one way in the same run. In process, on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Finding, FindingStatus, ScopeFailure
from offboard_audit.core.runs import SourceStatus
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.actions import iter_events, load_actions
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver
from tests.support.revocation import NOW, Env

# --- revocation engine --------------------------------------------------------------------------


@pytest.mark.parametrize("apply", [True, False])
def test_undoing_an_action_that_does_not_exist_is_refused_by_name_and_changes_nothing(
    env: Env, apply: bool
) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True)
    changes, events = env.world.changes(), list(iter_events(env.store))

    report = env.engine().undo_action("a-0000000000000000", NOW, apply=apply)

    assert report.refused == "no action with id 'a-0000000000000000'"
    assert report.dry_run is (not apply)
    assert not report.ok and report.outcomes == ()
    assert env.world.changes() == changes and list(iter_events(env.store)) == events


def test_a_dry_run_of_the_delete_stage_says_each_action_deletes_and_cannot_be_undone(env: Env) -> None:
    env.reload({"delete_after": "7d"})
    env.audit()
    first = env.engine().revoke(NOW, apply=True)
    disabled = {(o.credential_id, o.stage, o.reversible) for o in first.outcomes}
    assert ("AK1", "disable", True) in disabled
    env.audit(NOW + timedelta(hours=1))

    late = NOW + timedelta(days=8)
    dry = env.engine(late).revoke(late, apply=False)

    assert dry.dry_run and dry.refused is None
    assert {(o.credential_id, o.action, o.status, o.stage, o.reversible) for o in dry.outcomes} == {
        ("AK1", "delete_key", "dry-run", "delete", False),
        ("AK2", "delete_key", "dry-run", "delete", False),
    }
    assert env.world.credential("AK1").get("exists") is not False
    assert {a.status for a in load_actions(env.store)} == {"applied"}


# --- account sources whose scopes fail in several ways in one run --------------------------------

ORG_NOW = T0 + timedelta(days=10)


def three_scope_org() -> tuple[FakeHRSource, FakeAccountSource]:
    """bob (scope 111), carol (222) and dave (333) left; each still has an active key."""
    hr = FakeHRSource(
        people=[
            leaver("E2", T0, email="bob@example.com"),
            leaver("E3", T0, email="carol@example.com"),
            leaver("E4", T0, email="dave@example.com"),
        ]
    )
    accts = [
        account(name, emails=(f"{name}@example.com",), scope=scope)
        for name, scope in (("bob", "111"), ("carol", "222"), ("dave", "333"))
    ]
    keys = {a.account_id: credential(a, f"AK-{a.account_id}") for a in accts}
    sys = FakeAccountSource(
        accounts=accts,
        credentials=list(keys.values()),
        detail_credentials={name: [key] for name, key in keys.items()},
    )
    return hr, sys


def open_by_account(findings: Iterable[Finding]) -> dict[str, set[tuple[str | None, bool]]]:
    out: dict[str, set[tuple[str | None, bool]]] = {}
    for f in findings:
        if f.status is FindingStatus.OPEN:
            cid = f.credential.credential_id if f.credential else None
            out.setdefault(f.account.account_id, set()).add((cid, f.stale))
    return out


def test_scopes_failed_in_the_bulk_read_and_in_the_detail_pass_all_stay_stale_and_the_rest_stays_fresh(
    tmp_path: Path,
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    hr, sys = three_scope_org()
    cfg = config_with(tmp_path, account_sources=[sys.name])
    pipe = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, sys.name: sys})
    first = open_by_account(pipe.run(ORG_NOW).findings)
    assert set(first) == {"bob", "carol", "dave"}
    assert all(("AK-" + name, False) in first[name] for name in first)

    # Scope 111 fails in the bulk read, as does 444 (never read before); scope 222 fails in the
    # detail pass; scope 333 is read in full.
    sys.failed_scopes = [ScopeFailure("111", "AccessDenied"), ScopeFailure("444", "AccessDenied")]
    sys.detail_failed_scopes = [ScopeFailure("222", "Throttling")]
    result = pipe.run(ORG_NOW + timedelta(hours=1))

    (src,) = [s for s in result.sources if s.name == "sys"]
    assert src.status is SourceStatus.FAILED
    assert sorted((f.scope, f.error) for f in src.failed_scopes) == [
        ("111", "AccessDenied"),
        ("222", "detail pass failed: Throttling"),
        ("444", "AccessDenied (no earlier data)"),
    ]
    # Each account once: bob and carol from the stored data, dave fresh.
    assert dict(src.counts) == {"accounts": 3, "credentials": 3}
    found = open_by_account(result.findings)
    assert {name: {cid for cid, _ in f} for name, f in found.items()} == {
        name: {cid for cid, _ in f} for name, f in first.items()
    }
    assert all(stale for name in ("bob", "carol") for _, stale in found[name])
    assert not any(stale for _, stale in found["dave"])
    assert store.list_findings([FindingStatus.RESOLVED.value]) == []
    store.engine.dispose()
