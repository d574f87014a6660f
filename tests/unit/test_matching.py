from __future__ import annotations

from datetime import timedelta

from offboard_audit.core.evaluate import evaluate
from offboard_audit.core.matching import (
    PeopleIndex,
    match_account,
    match_all,
    usernames_for,
    validate_username_rules,
)
from offboard_audit.core.protocols import MatchSpec
from offboard_audit.core.records import Rule
from offboard_audit.engine.collect import group_credentials
from tests.support.fakes import T0, account, credential, leaver, person

SPEC = MatchSpec(employee_id_attributes=("employeeNumber",), email_attributes=("mail",))
RULES = ("alias", "email_local")


def index(*people):
    return PeopleIndex.build(people, RULES)


def test_an_employee_id_and_an_email_naming_different_people_make_the_account_ambiguous():
    # The id tag says E1 (who left), the email says E2 (who works here): acting on the id would
    # revoke E2's access if the account is really theirs, so nobody is picked.
    alice = leaver("E1", T0, email="alice@example.com")
    bob = person("E2", "bob@example.com")
    acct = account("a", attributes=(("employeeNumber", "E1"), ("mail", "bob@example.com")))
    link = match_account(acct, SPEC, index(alice, bob))
    assert link.ambiguous and link.person is None
    assert {p.employee_id for p in link.people} == {"E1", "E2"}


def test_employee_id_decides_when_the_email_names_the_same_person_or_nobody():
    alice = person("E1", "alice@example.com")
    bob = person("E2", "bob@example.com")
    idx = index(alice, bob)
    same = account("a", attributes=(("employeeNumber", "E1"), ("mail", "ALICE@example.com")))
    unknown = account("b", attributes=(("employeeNumber", "E1"), ("mail", "nobody@example.com")))
    for acct in (same, unknown):
        link = match_account(acct, SPEC, idx)
        assert link.person == alice and link.matched_by == "employee_id"


def test_rehire_under_a_new_id_whose_account_keeps_the_old_id_tag_is_not_revoked():
    # Rehired as E5 with their old email; the old account still carries the old id E1, which HR
    # keeps as terminated. The account is theirs again: no finding may ask to revoke it.
    old = leaver("E1", T0, email="alice@example.com")
    rehired = person("E5", "alice@example.com")
    acct = account("alice", attributes=(("employeeNumber", "E1"), ("mail", "alice@example.com")))
    key = credential(acct, "AKIA1")
    links = match_all([acct], {"sys": SPEC}, [old, rehired], RULES)
    findings = evaluate(links, group_credentials([key]), T0 + timedelta(days=30))
    assert [f.rule for f in findings] == [Rule.AMBIGUOUS_OWNER]
    assert {p.employee_id for p in findings[0].candidates} == {"E1", "E5"}


def test_email_match_is_case_insensitive_and_trimmed():
    alice = person("E1", "alice@example.com")
    link = match_account(account("a", emails=("  Alice@EXAMPLE.com ",)), SPEC, index(alice))
    assert link.person == alice


def test_email_aliases_match():
    carol = person("E3", "carol@example.com", aliases=("carol.g@corp.example.com",))
    link = match_account(account("x", attributes=(("mail", "CAROL.G@corp.example.com"),)), SPEC, index(carol))
    assert link.person == carol and link.matched_by == "email"


def test_username_that_is_an_email_matches_by_email():
    alice = person("E1", "alice@example.com")
    assert match_account(account("alice@example.com"), SPEC, index(alice)).person == alice


def test_an_address_at_another_domain_is_not_our_person_with_the_same_local_part():
    # An IAM user (or a GitHub invitation, a Vault OIDC alias) named bob@partner.example belongs
    # to somebody HR does not know; our bob@example.com leaving must not revoke it.
    bob = leaver("E2", T0, email="bob@example.com")
    stranger = account("bob@partner.example")
    key = credential(stranger, "AKIA2")
    links = match_all([stranger], {"sys": SPEC}, [bob], RULES)
    assert links[0].people == ()
    findings = evaluate(links, group_credentials([key]), T0 + timedelta(days=30))
    assert [f.rule for f in findings] == [Rule.ORPHAN_ACCOUNT]


def test_user_at_domain_names_carry_the_plain_username_within_the_person_s_domains():
    jane = person("E3", "jane.doe@example.com", aliases=("jdoe", "jd@corp.example.com"))
    idx = index(jane)
    assert match_account(account("JDoe@Example.com"), SPEC, idx).person == jane
    assert match_account(account("jdoe@corp.example.com"), SPEC, idx).person == jane
    assert match_account(account("jdoe@partner.example"), SPEC, idx).people == ()
    assert match_account(account("jane.doe@partner.example"), SPEC, idx).people == ()


def test_username_rules_email_local_and_alias():
    bob = person("E2", "bob@example.com", aliases=("bleaver",))
    idx = index(bob)
    assert match_account(account("u1", username="bob"), SPEC, idx).person == bob
    assert match_account(account("u2", username="BLEAVER"), SPEC, idx).person == bob
    assert match_account(account("u3", username="EXAMPLE\\bob"), SPEC, idx).person == bob


def test_template_rules_derive_usernames_from_the_name():
    p = person("E7", "x@example.com", name="Jane Q Doe")
    assert usernames_for(p, ("{first}.{last}", "{first_initial}{last}")) == {"jane.doe", "jdoe"}


def test_invalid_username_rule_is_reported():
    assert validate_username_rules(["alias", "{first}.{surname}"]) != []
    assert validate_username_rules(["alias", "email_local", "{first}.{last}"]) == []


def test_two_people_sharing_an_alias_make_the_account_ambiguous():
    h1 = person("E8", "heidi.smith@example.com", aliases=("heidi",))
    h2 = person("E9", "heidi.jones@example.com", aliases=("heidi",))
    link = match_account(account("heidi"), SPEC, index(h1, h2))
    assert link.ambiguous and link.person is None
    assert {p.employee_id for p in link.people} == {"E8", "E9"}


def test_an_account_address_typed_decomposed_is_the_hr_address_so_the_leavers_credential_is_flagged():
    # HR reads josé in NFC; LDAP or a tag may hold the same address decomposed (e + U+0301), in
    # another case. Compared as raw strings the account was nobody's (an orphan) and the leaver's
    # live key went unflagged.
    jose = leaver("E2", T0, email="jos\u00e9@example.com")
    acct = account("j.old", attributes=(("mail", "JOSE\u0301@Example.com"),))
    key = credential(acct, "AKIA-JOSE")
    links = match_all([acct], {"sys": SPEC}, [jose, person("E3", "jose@example.com")], RULES)
    assert [p.employee_id for p in links[0].people] == ["E2"]
    findings = evaluate(links, group_credentials([key]), T0 + timedelta(days=30))
    assert [(f.rule, f.person) for f in findings] == [(Rule.CREDENTIAL_AFTER_TERMINATION, jose)]


def test_a_zero_width_space_in_an_account_email_does_not_hide_that_the_address_was_reused():
    # The old account keeps its old id tag E1 (the leaver) and holds the address HR has given to
    # the new hire E5, with a zero-width space pasted in. Unseen, the id alone named the leaver and
    # the new hire's key was flagged for revocation; seen, the account is ambiguous.
    old = leaver("E1", T0, email="alice@example.com")
    new = person("E5", "alice@example.com")
    acct = account("a1", attributes=(("employeeNumber", "E1"), ("mail", "alice\u200b@example.com")))
    key = credential(acct, "AKIA-A1")
    links = match_all([acct], {"sys": SPEC}, [old, new], RULES)
    findings = evaluate(links, group_credentials([key]), T0 + timedelta(days=30))
    assert [f.rule for f in findings] == [Rule.AMBIGUOUS_OWNER]
    assert {p.employee_id for p in findings[0].candidates} == {"E1", "E5"}


def test_an_identifier_of_invisible_characters_only_matches_nobody():
    # In one form it is empty: two such values are no evidence that two things are one.
    blank = person("E4", "dana@example.com", aliases=("\u200b",))
    assert match_account(account("x", username="\u200b"), SPEC, index(blank)).people == ()
    assert match_account(account("y", username="\u200bdana"), SPEC, index(blank)).people == (blank,)


def test_no_evidence_means_no_match():
    link = match_account(account("mallory"), SPEC, index(person("E1", "alice@example.com")))
    assert link.people == ()


def test_filter_metacharacters_in_names_match_nothing_extra():
    evil = person("E66", "*)(uid=*))(|(uid=*@example.com", aliases=("*",))
    others = [account("alice"), account("bob"), account("*)(uid=*))(|(uid=*")]
    links = match_all(others, {"sys": SPEC}, [evil], RULES)
    matched = [link.account.account_id for link in links if link.people]
    assert matched == ["*)(uid=*))(|(uid=*"]


def test_match_all_scales_linearly_with_index_lookups():
    people = [person(f"E{i}", f"user{i}@example.com") for i in range(5000)]
    accounts = [account(f"user{i}") for i in range(5000)]
    links = match_all(accounts, {}, people, RULES)
    assert all(link.person is not None and link.person.employee_id == f"E{i}" for i, link in enumerate(links))


def test_a_link_says_which_evidence_decided_it():
    # The finding's reason and the JSON report say how an account was tied to a person: the
    # operator reads it to decide whether to trust a match, so each path names itself.
    alice = leaver("E1", T0, email="alice@example.com")
    bob = person("E2", "bob@example.com", aliases=("bleaver",))
    idx = index(alice, bob)
    conflict = account("a", attributes=(("employeeNumber", "E1"), ("mail", "bob@example.com")))
    assert match_account(conflict, SPEC, idx).matched_by == "employee_id and email"
    assert match_account(account("bleaver"), SPEC, idx).matched_by == "username"
    assert match_account(account("nobody-here"), SPEC, idx).matched_by == ""


def test_a_username_rule_that_derives_a_full_address_still_matches_outside_the_persons_domains():
    # A template rule may derive a whole user@domain login (a company's SSO realm); that login is
    # the person's by the rule, whatever domains their own addresses are in.
    jane = person("E3", "jane.doe@example.com")
    idx = PeopleIndex.build([jane], (*RULES, "{email_local}@sso.example"))
    link = match_account(account("jane.doe@sso.example"), SPEC, idx)
    assert link.person == jane and link.matched_by == "username"
