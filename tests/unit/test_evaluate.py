from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from offboard_audit.core.evaluate import EvalPolicy, evaluate
from offboard_audit.core.records import (
    AccountKind,
    CredentialKind,
    Exemption,
    FindingStatus,
    Link,
    PersonStatus,
    Rule,
    Severity,
    finding_id,
)
from offboard_audit.engine.collect import group_credentials
from tests.support.fakes import T0, account, credential, leaver, person

NOW = T0 + timedelta(days=30)


def run(links, creds, **kw):
    return evaluate(links, group_credentials(creds), NOW, **kw)


def test_credential_used_after_termination_is_critical():
    bob = leaver("E2", T0)
    a = account("bob")
    key = credential(a, "AKIA1", last_used_at=T0 + timedelta(days=3))
    (f,) = run([Link(a, (bob,))], [key])
    assert f.rule is Rule.USED_AFTER_TERMINATION and f.severity is Severity.CRITICAL
    assert f.person == bob and f.credential == key


def test_active_credential_unused_since_termination_is_high():
    carol = leaver("E3", T0)
    a = account("carol")
    key = credential(a, "AKIA2", last_used_at=T0 - timedelta(days=3))
    (f,) = run([Link(a, (carol,))], [key])
    assert f.rule is Rule.CREDENTIAL_AFTER_TERMINATION and f.severity is Severity.HIGH


def test_inactive_credentials_raise_nothing():
    carol = leaver("E3", T0)
    a = account("carol")
    assert (
        run([Link(a, (carol,))], [credential(a, "K", active=False, last_used_at=T0 + timedelta(days=1))])
        == []
    )


def test_future_termination_is_not_yet_a_termination():
    dave = person("E4", status=PersonStatus.TERMINATED, terminated_at=NOW + timedelta(days=1))
    a = account("dave")
    assert run([Link(a, (dave,))], [credential(a, "K")]) == []


def test_active_people_raise_nothing():
    alice = person("E1")
    a = account("alice")
    assert run([Link(a, (alice,))], [credential(a, "K", last_used_at=NOW)]) == []


def test_grace_period_sets_due_date():
    bob = leaver("E2", T0)
    a = account("bob")
    (f,) = run([Link(a, (bob,))], [credential(a, "K")], policy=EvalPolicy(grace_period=timedelta(hours=4)))
    assert f.due_at == T0 + timedelta(hours=4)


def test_finding_ids_are_stable_and_first_seen_is_carried():
    bob = leaver("E2", T0)
    a = account("bob")
    k = credential(a, "K")
    (first,) = run([Link(a, (bob,))], [k])
    assert first.finding_id == finding_id(Rule.CREDENTIAL_AFTER_TERMINATION, "sys", "bob", "K")
    earlier = T0 + timedelta(days=1)
    (again,) = run([Link(a, (bob,))], [k], first_seen={first.finding_id: earlier})
    assert again.finding_id == first.finding_id and again.first_seen == earlier


def test_ambiguous_and_orphan_human_accounts():
    h1, h2 = person("E8"), person("E9")
    amb = account("heidi")
    orphan = account("mallory")
    svc = account("svc-deploy", kind=AccountKind.SERVICE)
    disabled = account("old", enabled=False)
    findings = run([Link(amb, (h1, h2)), Link(orphan, ()), Link(svc, ()), Link(disabled, ())], [])
    assert {(f.rule, f.account.account_id) for f in findings} == {
        (Rule.AMBIGUOUS_OWNER, "heidi"),
        (Rule.ORPHAN_ACCOUNT, "mallory"),
    }
    assert all(f.due_at is None for f in findings)


def test_orphan_rule_can_be_turned_off_and_protected_accounts_are_not_orphans():
    orphan = account("mallory")
    glass = account("uid=breakglass,ou=people", username="breakglass")
    assert run([Link(orphan, ())], [], policy=EvalPolicy(orphan_accounts=False)) == []
    findings = run([Link(glass, ())], [], policy=EvalPolicy(protected=("sys:uid=breakglass,*",)))
    assert findings == []


def test_active_exemption_marks_exempted_and_expired_one_does_not():
    bob = leaver("E2", T0)
    a = account("bob")
    k = credential(a, "AKIA9")
    active = Exemption("x1", "sys:bob:AKIA*", "legal hold", NOW + timedelta(days=1), "sec", T0)
    expired = Exemption("x2", "sys:bob", "old", NOW - timedelta(seconds=1), "sec", T0)
    (f,) = run([Link(a, (bob,))], [k], exemptions=[active])
    assert f.status is FindingStatus.EXEMPTED and f.exemption_id == "x1"
    (g,) = run([Link(a, (bob,))], [k], exemptions=[expired])
    assert g.status is FindingStatus.OPEN and g.exemption_id is None


def test_service_account_owned_by_a_leaver_is_flagged():
    grace = leaver("E7", T0)
    sa = account("ci-deployer", kind=AccountKind.SERVICE)
    key = credential(sa, "keys/1", kind=CredentialKind.SERVICE_ACCOUNT_KEY, created_at=T0 + timedelta(days=2))
    (f,) = run([Link(sa, (grace,))], [key])
    assert f.rule is Rule.CREDENTIAL_AFTER_TERMINATION
    assert run([Link(sa, (grace,))], [key], policy=EvalPolicy(service_accounts_owned=False)) == []


def test_service_account_ambiguous_between_a_leaver_and_a_new_hire_is_reported_not_dropped():
    # The leaver's email was given to a new hire: the service account the leaver owned now matches
    # both. Owned by the leaver alone its key is flagged; the second candidate must not make it
    # vanish from the findings (storage would resolve the open one), nor make it revocable.
    left = leaver("E7", T0, email="grace@example.com")
    new_hire = person("E70", "grace@example.com")
    sa = account("ci-deployer", kind=AccountKind.SERVICE)
    key = credential(sa, "keys/1", kind=CredentialKind.SERVICE_ACCOUNT_KEY)
    (f,) = run([Link(sa, (left, new_hire), "email")], [key])
    assert f.rule is Rule.AMBIGUOUS_OWNER and f.person is None and f.credential is None
    assert {p.employee_id for p in f.candidates} == {"E7", "E70"}
    # Service accounts' owners switched off, or nobody of them departed: nothing, as before.
    assert run([Link(sa, (left, new_hire))], [key], policy=EvalPolicy(service_accounts_owned=False)) == []
    assert run([Link(sa, (person("E8"), new_hire))], [key]) == []


def test_disabled_account_holding_a_key_ambiguous_with_a_leaver_is_reported():
    left = leaver("E7", T0, email="grace@example.com")
    rehired = person("E71", "grace@example.com")
    old = account("grace", enabled=False)
    key = credential(old, "ssh-1", kind=CredentialKind.SSH_KEY)
    (f,) = run([Link(old, (left, rehired), "email")], [key])
    assert f.rule is Rule.AMBIGUOUS_OWNER
    # Nothing active left on it: nothing to report.
    assert run([Link(old, (left, rehired))], [replace(key, active=False)]) == []


def test_stale_scope_marks_findings_stale():
    bob = leaver("E2", T0)
    a = account("bob", scope="111")
    (f,) = run([Link(a, (bob,))], [credential(a, "K")], stale_scopes=frozenset({("sys", "111")}))
    assert f.stale


def test_circuit_breaker_thresholds_and_baseline():
    from dataclasses import replace as _replace

    from offboard_audit.core.people import circuit_breaker_reason

    staff = [person(f"E{i}") for i in range(100)]
    four = [
        _replace(p, status=PersonStatus.TERMINATED, terminated_at=NOW) if i < 4 else p
        for i, p in enumerate(staff)
    ]
    six = [
        _replace(p, status=PersonStatus.TERMINATED, terminated_at=NOW) if i < 6 else p
        for i, p in enumerate(staff)
    ]
    assert circuit_breaker_reason(staff, four, [], 0.05, NOW) is None
    assert "6 of 100" in (circuit_breaker_reason(staff, six, [], 0.05, NOW) or "")
    # People already gone in the last good read are not "new".
    assert circuit_breaker_reason(six, six, [], 0.05, NOW) is None
    # The first read is the baseline; an empty or failed read always trips.
    assert circuit_breaker_reason([], six, [], 0.05, NOW) is None
    assert circuit_breaker_reason(staff, [], [], 0.05, NOW) == "HR read returned nobody"
    assert "hr" in (circuit_breaker_reason(staff, staff, ["hr"], 0.05, NOW) or "")


def test_use_at_exactly_the_termination_instant_is_not_use_after_it():
    # The boundary: a key used at the very second the person left was used while employed.
    bob = leaver("E2", T0)
    a = account("bob")
    at_exit = credential(a, "AK-AT", last_used_at=T0)
    just_after = credential(a, "AK-AFTER", last_used_at=T0 + timedelta(seconds=1))
    by_id = {f.credential.credential_id: f.rule for f in run([Link(a, (bob,))], [at_exit, just_after])}
    assert by_id == {"AK-AT": Rule.CREDENTIAL_AFTER_TERMINATION, "AK-AFTER": Rule.USED_AFTER_TERMINATION}


def test_a_placeholder_credential_never_becomes_a_finding():
    bob = leaver("E2", T0)
    a = account("bob")
    slot = replace(
        credential(a, "report/access_key_1", last_used_at=T0 + timedelta(days=1)), provisional=True
    )
    real = credential(a, "AKIAREAL")
    (f,) = run([Link(a, (bob,))], [slot, real])
    assert f.credential == real


def test_findings_carry_the_accounts_immutable_identity():
    bob = leaver("E2", T0)
    a = account("bob", uid="AIDA-BOB-1")
    (f,) = run([Link(a, (bob,))], [credential(a, "K")])
    assert f.account.uid == "AIDA-BOB-1"


def test_eval_policy_of_carries_every_evaluation_setting_from_the_config():
    from offboard_audit.core.policy import PolicyConfig

    policy = PolicyConfig(
        grace_period=timedelta(hours=4),
        orphan_accounts=False,
        service_accounts_owned=False,
        protected=("sys:breakglass",),
    )
    assert EvalPolicy.of(policy) == EvalPolicy(timedelta(hours=4), False, False, ("sys:breakglass",))


def test_skipped_accounts_do_not_stop_the_evaluation_of_the_accounts_after_them():
    bob = leaver("E2", T0)
    svc = account("svc-bob", kind=AccountKind.SERVICE)
    disabled = account("old", enabled=False)
    guard = account("breakglass")
    orphan = account("mallory")
    later = account("bob")
    links = [
        Link(svc, (bob,)),  # a leaver's service account, not owned by policy
        Link(disabled, ()),
        Link(guard, ()),
        Link(orphan, ()),
        Link(later, (bob,)),
    ]
    creds = [credential(svc, "K-svc"), credential(later, "K-bob")]
    found = run(links, creds, policy=EvalPolicy(service_accounts_owned=False, protected=("sys:breakglass",)))
    assert {(f.account.account_id, f.rule) for f in found} == {
        ("mallory", Rule.ORPHAN_ACCOUNT),
        ("bob", Rule.CREDENTIAL_AFTER_TERMINATION),
    }


def test_reasons_name_the_credential_the_person_and_the_precision_of_the_last_use():
    bob = leaver("E2", T0, name="")
    a = account("bob")
    used = credential(a, "AK-USED", last_used_at=T0 + timedelta(days=2))
    coarse = replace(
        credential(a, "AK-COARSE", last_used_at=T0 + timedelta(days=20)),
        last_used_precision=timedelta(days=14),
    )
    idle = credential(a, "AK-IDLE")
    reasons = {f.credential.credential_id: f.reason for f in run([Link(a, (bob,))], [used, coarse, idle])}
    assert reasons["AK-USED"] == (
        f"access_key AK-USED last used {(T0 + timedelta(days=2)).isoformat(timespec='seconds')}, "
        f"after E2 left on {T0.isoformat(timespec='seconds')}"
    )
    assert "(recorded to within 14 days, 0:00:00)" in reasons["AK-COARSE"]
    assert (
        reasons["AK-IDLE"]
        == f"access_key AK-IDLE still active; E2 left on {T0.isoformat(timespec='seconds')}"
    )


def test_a_last_use_kept_from_an_earlier_read_is_said_to_be_so_in_the_reason():
    # A failed last-use read keeps the last known value (engine/collect). The reason must not
    # present it as this run's reading: a later use, after leaving, may simply not have been seen.
    bob = leaver("E2", T0, name="")
    a = account("bob")
    before, after = T0 - timedelta(days=5), T0 + timedelta(days=2)
    kept_before = replace(credential(a, "AK-BEFORE", last_used_at=before), last_used_stale=True)
    kept_after = replace(credential(a, "AK-AFTER", last_used_at=after), last_used_stale=True)
    kept_none = replace(credential(a, "AK-NONE"), last_used_stale=True)
    fresh = credential(a, "AK-FRESH", last_used_at=before)
    found = {
        f.credential.credential_id: f
        for f in run([Link(a, (bob,))], [kept_before, kept_after, kept_none, fresh])
    }
    left = T0.isoformat(timespec="seconds")
    assert found["AK-BEFORE"].rule is Rule.CREDENTIAL_AFTER_TERMINATION
    assert found["AK-BEFORE"].reason == (
        f"access_key AK-BEFORE still active; E2 left on {left}; this run could not read its last use "
        f"(last known: {before.isoformat(timespec='seconds')}), so a use after leaving is not ruled out"
    )
    assert found["AK-NONE"].reason.endswith("(last known: none), so a use after leaving is not ruled out")
    assert found["AK-AFTER"].rule is Rule.USED_AFTER_TERMINATION
    assert found["AK-AFTER"].reason == (
        f"access_key AK-AFTER last used {after.isoformat(timespec='seconds')} (as of an earlier read: "
        f"this run could not read its last use), after E2 left on {left}"
    )
    assert found["AK-FRESH"].reason == f"access_key AK-FRESH still active; E2 left on {left}"


def test_a_coarse_last_use_kept_from_an_earlier_read_states_both_its_precision_and_its_age() -> None:
    bob = leaver("E2", T0, name="")
    a = account("bob")
    after = T0 + timedelta(days=20)
    kept = replace(
        credential(a, "AK-AD", last_used_at=after),
        last_used_precision=timedelta(days=14),
        last_used_stale=True,
    )
    (f,) = run([Link(a, (bob,))], [kept])
    assert f.reason == (
        f"access_key AK-AD last used {after.isoformat(timespec='seconds')} (recorded to within "
        "14 days, 0:00:00) (as of an earlier read: this run could not read its last use), "
        f"after E2 left on {T0.isoformat(timespec='seconds')}"
    )


def test_an_ambiguous_account_lists_its_candidates_in_the_finding_and_the_reason():
    ann = person("E5", "ann@example.com")
    andy = person("E6", "", name="Andy")
    a = account("asmith")
    (f,) = run([Link(a, (ann, andy), matched_by="username")], [])
    assert f.rule is Rule.AMBIGUOUS_OWNER and f.candidates == (ann, andy)
    assert f.reason == "account 'asmith' matches 2 people by username: E5 (ann@example.com), E6 (Andy)"


def test_a_source_failed_as_a_whole_marks_every_finding_of_it_stale():
    bob = leaver("E2", T0)
    a = account("bob", scope="111")
    (f,) = run([Link(a, (bob,))], [credential(a, "K")], stale_scopes=frozenset({("sys", "*")}))
    assert f.stale
    (g,) = run([Link(a, (bob,))], [credential(a, "K")], stale_scopes=frozenset({("other", "*")}))
    assert not g.stale
