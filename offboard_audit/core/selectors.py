"""Selectors name a source, an account or a credential, globs allowed.

Form: ``PREFIX[:SCOPE]:ACCOUNT[:CREDENTIAL]``. PREFIX is a source name, a system
(``aws_iam``) or its short form (``aws``, ``gcp``, ``ldap``); SCOPE (optional) is the part of
the source the account lives in (an AWS account id, a GCP project, an LDAP base); ACCOUNT is
an account id or username; CREDENTIAL a credential id. ``aws:root``,
``aws:111111111111:breakglass`` (only in that AWS account), ``ldap:uid=breakglass,*``,
``aws-main:bob:AKIA*`` and ``corp-ldap:*`` are all selectors. An unscoped selector matches in
every scope.

A word without a colon is read as a whole source or system (``aws-main``, the same as
``aws-main:*``), so ``alice`` would select nothing at all and ``aws`` every AWS account: a
mistake either way that nothing reported. :func:`selector_problem` refuses a bare word that names
no configured source or system, and ``exempt add`` takes a whole source only spelled out
(``aws-main:*``): an exemption that silences a whole source must not be one typo away.

Matching is case-insensitive everywhere: IAM user names, AD sAMAccountName/UPN, DNs and
emails are case-insensitive in their systems, and for protection matching too much is the safe
side (a protected ``BreakGlass`` must not be revoked because the selector says ``breakglass``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from fnmatch import fnmatchcase

from offboard_audit.core.records import Account, Credential, Exemption


def _prefixes_of(source: str, system: str) -> set[str]:
    """The PREFIX words that select a source: its name, its system and the system's short form."""
    system = system.lower()
    return {source.lower(), system, system.removesuffix("_iam")}


def _prefixes(account: Account) -> set[str]:
    return _prefixes_of(account.source, account.system)


FORM = "PREFIX[:SCOPE]:ACCOUNT[:CREDENTIAL]"
EXAMPLES = '"aws:alice", "aws-main:111111111111:alice", "corp-ldap:uid=alice,*", "aws-main:bob:AKIA*"'


def known_prefixes(sources: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The words a selector's PREFIX may be for these ``(source name, system)`` pairs: the same
    words matching compares (lower case)."""
    return frozenset(word for name, system in sources for word in _prefixes_of(name, system))


def unknown_prefix(selector: str, prefixes: Collection[str]) -> str | None:
    """Why ``selector`` (with a colon) selects nothing in these sources, or None: its PREFIX
    (globs allowed) matches none of ``prefixes`` (:func:`known_prefixes`). A reversed
    ``root:aws`` or a misspelt ``aws-mian:root`` would otherwise protect or exempt nothing,
    silently, and the credential it was meant to keep would be revoked."""
    word = selector.strip()
    if ":" not in word:
        return None
    head = word.split(":", 1)[0].lower()
    if any(fnmatchcase(p, head) for p in prefixes):
        return None
    known = ", ".join(sorted(prefixes)) or "none"
    return (
        f"{word!r} selects nothing: its PREFIX {head!r} names no configured source or system "
        f"(configured: {known}); a selector is {FORM}"
    )


def selector_problem(selector: str, prefixes: Collection[str] | None, *, bare_source: bool) -> str | None:
    """Why ``selector`` cannot be used, or None.

    ``prefixes`` are the :func:`known_prefixes` of the configured sources (None: not known, no
    config). ``bare_source`` says whether a bare source or system name may stand for all of it:
    yes in ``policy.protected`` (protecting too much is the safe side), no for an exemption,
    which must then be spelled ``NAME:*``."""
    word = selector.strip()
    if not word:
        return f"a selector must not be empty: it is {FORM}"
    if ":" in word:
        return None
    is_prefix = prefixes is not None and word.lower() in prefixes
    if is_prefix and bare_source:
        return None
    if is_prefix:
        return (
            f"{word!r} alone would select everything in that source or system: "
            f"write {word + ':*'!r} if that is what you mean"
        )
    if prefixes is None:
        why = "has no colon"
    else:
        why = "names no configured source or system, so it would select nothing"
    if bare_source:
        known = ", ".join(sorted(prefixes or ())) or "none"
        whole = f"; a source or system name alone selects all of it (configured: {known})"
    else:
        whole = "; everything in a source or system is NAME:*"
    return f"{word!r} {why}: a selector is {FORM} (e.g. {EXAMPLES}){whole}"


def candidates(account: Account, credential: Credential | None = None) -> list[str]:
    """Every string a selector may match for this account (and credential)."""
    names = {account.account_id.lower(), account.username.lower()}
    scope = account.scope.lower()
    heads = [f"{prefix}:" for prefix in _prefixes(account)]
    if scope:
        heads += [f"{head}{scope}:" for head in list(heads)]
    out = []
    for head in heads:
        for name in names:
            out.append(f"{head}{name}")
            if credential is not None:
                out.append(f"{head}{name}:{credential.credential_id.lower()}")
    return out


def matches(selector: str, account: Account, credential: Credential | None = None) -> bool:
    pattern = selector.strip().lower()
    if ":" not in pattern:
        # A bare source name or system selects everything in it (policy.protected; exemptions
        # are refused in this form when added, see selector_problem).
        return pattern in _prefixes(account)
    # "[" opens a character class in a glob, but names have brackets too (an AD "CN=Break Glass
    # [DO NOT DISABLE]"): a selector that writes such a name out, globs around it or not, must
    # select it. So "[" is also read as itself; other names than the ones the glob selects can
    # only match by containing the bracketed text as written.
    literal = pattern.replace("[", "[[]")
    return any(fnmatchcase(c, pattern) or fnmatchcase(c, literal) for c in candidates(account, credential))


def first_match(
    selectors: Iterable[str], account: Account, credential: Credential | None = None
) -> str | None:
    for selector in selectors:
        if matches(selector, account, credential):
            return selector
    return None


def active_exemption(
    exemptions: Sequence[Exemption], account: Account, credential: Credential | None, now: datetime
) -> Exemption | None:
    """The first exemption that is still in force at ``now`` and selects this credential."""
    for ex in exemptions:
        if ex.active(now) and matches(ex.selector, account, credential):
            return ex
    return None


def last_moment_refusal(
    protected: Iterable[str],
    exemptions: Sequence[Exemption],
    account: Account,
    credential: Credential | None,
    now: datetime,
) -> str | None:
    """Why a planned action must not run after all (checked right before each change, with the
    exemptions read again): protected by a ``policy.protected`` selector, or exempted now."""
    hit = first_match(protected, account, credential)
    if hit is not None:
        return f"protected by policy.protected {hit!r}"
    exemption = active_exemption(exemptions, account, credential, now)
    if exemption is not None:
        return f"exempted by {exemption.exemption_id}"
    return None
