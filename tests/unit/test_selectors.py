"""Selectors for protection and exemptions: case, scope and globs (issue 10, item 4)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from offboard_audit.core import selectors
from offboard_audit.core.records import Account, Credential, CredentialKind, Exemption


def iam_user(name: str, account: str) -> Account:
    return Account(
        source="aws-main",
        system="aws_iam",
        account_id=f"arn:aws:iam::{account}:user/{name}",
        username=name,
        enabled=True,
        scope=account,
        uid=f"AIDA{name.upper()}",
    )


def test_protection_ignores_case_of_iam_user_names():
    assert (
        selectors.first_match(["aws:breakglass"], iam_user("BreakGlass", "111111111111")) == "aws:breakglass"
    )
    assert selectors.first_match(["aws:BREAKGLASS"], iam_user("breakglass", "111111111111")) is not None


def test_a_selector_scoped_to_one_aws_account_protects_only_there():
    scoped = ["aws:111111111111:breakglass"]
    assert selectors.first_match(scoped, iam_user("breakglass", "111111111111")) is not None
    assert selectors.first_match(scoped, iam_user("breakglass", "222222222222")) is None


def test_the_unscoped_selector_protects_the_name_in_every_account():
    for account in ("111111111111", "222222222222"):
        assert selectors.first_match(["aws:breakglass"], iam_user("breakglass", account)) is not None


def test_a_scoped_selector_with_a_credential_glob():
    user = iam_user("bob", "111111111111")
    key = Credential(
        "aws-main", user.account_id, "AKIAEXAMPLE", CredentialKind.ACCESS_KEY, True, scope="111111111111"
    )
    other = Credential(
        "aws-main", user.account_id, "ASIAOTHER", CredentialKind.ACCESS_KEY, True, scope="111111111111"
    )
    assert selectors.matches("aws-main:111111111111:bob:AKIA*", user, key)
    assert not selectors.matches("aws-main:111111111111:bob:AKIA*", user, other)
    assert not selectors.matches("aws-main:222222222222:bob:AKIA*", user, key)


def test_ad_names_match_whatever_their_case():
    acct = Account(
        source="corp-ad",
        system="ldap",
        account_id="CN=Break Glass,OU=Admins,DC=example,DC=test",
        username="BreakGlass@EXAMPLE.TEST",
        enabled=True,
        scope="DC=example,DC=test",
    )
    assert selectors.matches("ldap:breakglass@example.test", acct)
    assert selectors.matches("corp-ad:cn=break glass,*", acct)


def test_a_name_with_brackets_is_selected_by_itself_written_out() -> None:
    # "[" starts a glob character class: the break-glass account's own DN, copied into
    # policy.protected or an exemption, selected nothing, and the account was planned for
    # disabling. A selector equal to a candidate name selects it; globs still work.
    acct = Account(
        source="corp-ad",
        system="ldap",
        account_id="CN=Break Glass [DO NOT DISABLE],OU=Admins,DC=example,DC=test",
        username="breakglass",
        enabled=True,
        scope="DC=example,DC=test",
    )
    assert selectors.matches("corp-ad:CN=Break Glass [DO NOT DISABLE],OU=Admins,DC=example,DC=test", acct)
    assert selectors.first_match(["ldap:cn=break glass [do not disable],*"], acct) is not None
    assert selectors.matches("corp-ad:cn=break glass [[]do not disable],*", acct)
    assert selectors.matches("corp-ad:cn=break glass [a-f]*", replace(acct, account_id="CN=Break Glass D"))
    assert not selectors.matches("corp-ad:cn=break glass [do not disable],*", replace(acct, account_id="x"))


def test_a_selector_for_another_source_does_not_match():
    assert not selectors.matches("gcp:breakglass", iam_user("breakglass", "111111111111"))


def test_a_bare_source_or_system_selects_everything_in_it_and_nothing_else():
    user = iam_user("bob", "111111111111")
    assert selectors.matches("aws", user) and selectors.matches("aws-main", user)
    assert not selectors.matches("gcp", user) and not selectors.matches("corp-ldap", user)


def test_first_match_passes_the_credential_to_credential_selectors():
    user = iam_user("bob", "111111111111")
    key = Credential("aws-main", user.account_id, "AKIAEXAMPLE", CredentialKind.ACCESS_KEY, True)
    assert selectors.first_match(["aws:bob:AKIA*"], user, key) == "aws:bob:AKIA*"
    assert selectors.first_match(["aws:bob:AKIA*"], user) is None


def test_a_scope_with_capitals_matches_a_lower_case_selector():
    project = Account(
        "gcp", "gcp_iam", "user:bob@example.com", "user:bob@example.com", True, scope="My-Project"
    )
    assert selectors.matches("gcp:my-project:user:bob@*", project)


def test_the_last_moment_check_refuses_protected_and_exempted_targets_and_passes_the_rest() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    bob = iam_user("Bob", "111111111111")
    key = Credential(
        "aws-main", bob.account_id, "AKIA1", CredentialKind.ACCESS_KEY, True, scope="111111111111"
    )
    hold = Exemption("x-1", "aws:bob:AKIA1", "legal hold", now + timedelta(days=1), "lead", now)
    ran_out = Exemption("x-0", "aws:bob:AKIA1", "old", now, "lead", now - timedelta(days=9))
    refusal = selectors.last_moment_refusal

    assert refusal(["aws:bob"], [], bob, key, now) == "protected by policy.protected 'aws:bob'"
    assert refusal([], [hold], bob, key, now) == "exempted by x-1"
    # Protection is named first; an exemption that has run out, or a selector for somebody
    # else, lets the action through.
    assert refusal(["aws:*"], [hold], bob, key, now) == "protected by policy.protected 'aws:*'"
    assert refusal(["aws:alice"], [ran_out], bob, key, now) is None


def test_a_removed_exemption_no_longer_applies_and_says_it_was_removed() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    bob = iam_user("bob", "111111111111")
    removed = Exemption(
        "x-1",
        "aws:bob",
        "hold",
        now + timedelta(days=9),
        "lead",
        now - timedelta(days=2),
        now - timedelta(days=1),
    )
    expired_then_removed = replace(removed, until=now - timedelta(hours=1))
    assert not removed.active(now) and removed.state(now) == "removed"
    assert expired_then_removed.state(now) == "removed"  # what someone did wins over the date
    assert selectors.active_exemption([removed], bob, None, now) is None
    # Before its removal it applied.
    earlier = now - timedelta(days=1, seconds=1)
    assert removed.active(earlier) and removed.state(earlier) == "active"
    assert selectors.active_exemption([removed], bob, None, earlier) is removed


def known() -> frozenset[str]:
    return selectors.known_prefixes([("aws-main", "aws_iam"), ("corp-ldap", "ldap")])


def test_the_known_prefixes_are_each_source_its_system_and_the_short_form() -> None:
    assert known() == {"aws-main", "aws_iam", "aws", "corp-ldap", "ldap"}


def test_a_word_without_a_colon_is_refused_unless_it_names_a_source_or_system() -> None:
    problem, KNOWN = selectors.selector_problem, known()
    for selector in ("aws:root", "aws-main:111111111111:bob:AKIA*", "corp-ldap:*", "gcp:bob"):
        assert problem(selector, KNOWN, bare_source=True) is None
        assert problem(selector, KNOWN, bare_source=False) is None
    # policy.protected: a source or system alone protects all of it (the safe side) ...
    for selector in ("aws", "AWS-Main", " ldap "):
        assert problem(selector, KNOWN, bare_source=True) is None
    # ... and any other word would protect nothing.
    for selector in ("alice", "aws*", "gcp", ""):
        assert problem(selector, KNOWN, bare_source=True) is not None
    assert "PREFIX[:SCOPE]:ACCOUNT[:CREDENTIAL]" in str(problem("alice", KNOWN, bare_source=True))


def test_an_exemption_of_a_whole_source_must_be_spelled_out() -> None:
    problem, KNOWN = selectors.selector_problem, known()
    assert "write 'aws-main:*'" in str(problem("aws-main", KNOWN, bare_source=False))
    assert "write 'aws:*'" in str(problem("aws", KNOWN, bare_source=False))
    assert "names no configured source" in str(problem("bob", KNOWN, bare_source=False))
    # Without a config the sources are unknown: every bare word is refused.
    assert "has no colon" in str(problem("aws", None, bare_source=False))
    assert problem("aws:*", None, bare_source=False) is None


def test_a_selector_whose_prefix_matches_no_source_or_system_selects_nothing_and_says_so() -> None:
    from offboard_audit.core.selectors import known_prefixes, unknown_prefix

    prefixes = known_prefixes([("aws-main", "aws_iam"), ("corp-ldap", "ldap")])
    for fine in ("aws:root", "aws-main:111:bob:AKIA*", "AWS_IAM:bob", "corp-*:uid=bob,*", "bare-word"):
        assert unknown_prefix(fine, prefixes) is None, fine
    problem = unknown_prefix("root:aws", prefixes)
    assert problem is not None and "its PREFIX 'root' names no configured source or system" in problem
    assert "configured: aws, aws-main, aws_iam, corp-ldap, ldap" in problem
    assert unknown_prefix("gcp:alice", prefixes) is not None


def test_the_selector_refusals_read_exactly_so_for_every_case() -> None:
    # What an operator reads when a selector is refused: the whole text, each branch.
    from offboard_audit.core.selectors import known_prefixes, selector_problem, unknown_prefix

    form = (
        'a selector is PREFIX[:SCOPE]:ACCOUNT[:CREDENTIAL] (e.g. "aws:alice", '
        '"aws-main:111111111111:alice", "corp-ldap:uid=alice,*", "aws-main:bob:AKIA*")'
    )
    aws = known_prefixes([("aws-main", "aws_iam")])
    assert selector_problem("bob", None, bare_source=False) == (
        f"'bob' has no colon: {form}; everything in a source or system is NAME:*"
    )
    nothing = "'bob' names no configured source or system, so it would select nothing"
    assert selector_problem("bob", frozenset(), bare_source=True) == (
        f"{nothing}: {form}; a source or system name alone selects all of it (configured: none)"
    )
    assert selector_problem("bob", aws, bare_source=True) == (
        f"{nothing}: {form}; a source or system name alone selects all of it "
        "(configured: aws, aws-main, aws_iam)"
    )
    assert selector_problem("bob", aws, bare_source=False) == (
        f"{nothing}: {form}; everything in a source or system is NAME:*"
    )
    assert unknown_prefix("root:aws:x", frozenset()) == (
        "'root:aws:x' selects nothing: its PREFIX 'root' names no configured source or system "
        "(configured: none); a selector is PREFIX[:SCOPE]:ACCOUNT[:CREDENTIAL]"
    )
