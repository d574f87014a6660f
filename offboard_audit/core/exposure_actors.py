"""Actors to people for the exposure rules. Pure: does no I/O.

Actors are matched with the account matching (``matching.py``): an actor that is an account of
the source has that account's link (an IAM user by its UserId, ``Actor.uid``; never by its ARN
to an account of another UserId), unless that account stands for nobody, when its names decide
(a session an identity broker's user made, named after the person it serves); any other actor (a session, a Vault alias, a deleted user) is
matched name by name, strongest first (``Actor.names``), each name as an account username would
be (an email, ``DOMAIN\\user`` / ``user@realm`` forms, the configured username rules). The first
name that finds anyone decides; several people is ambiguous and nobody is blamed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from offboard_audit.core.exposure import Actor
from offboard_audit.core.matching import PeopleIndex, match_account
from offboard_audit.core.protocols import MatchSpec
from offboard_audit.core.records import Account, AccountKind, Link, Person

_NO_SPEC = MatchSpec()


def person_key(p: Person) -> tuple[str, str]:
    return (p.source, p.employee_id)


@dataclass(frozen=True)
class ActorIndex:
    """What actor matching needs from a run: the account links by (source, account id) and
    (source, uid), the accounts by (source, scope, username) to tell own accounts, the people."""

    links: Mapping[tuple[str, str], Link]
    by_username: Mapping[tuple[str, str, str], Link]
    people: PeopleIndex
    by_uid: Mapping[tuple[str, str], Link] = field(default_factory=dict)

    @classmethod
    def build(
        cls, links: Iterable[Link], people: Iterable[Person], username_rules: Sequence[str]
    ) -> ActorIndex:
        by_id: dict[tuple[str, str], Link] = {}
        by_name: dict[tuple[str, str, str], Link] = {}
        by_uid: dict[tuple[str, str], Link] = {}
        for link in links:
            a = link.account
            by_id[(a.source, a.account_id)] = link
            by_name[(a.source, a.scope, a.username.casefold())] = link
            if a.uid:
                by_uid[(a.source, a.uid)] = link
        return cls(by_id, by_name, PeopleIndex.build(people, username_rules), by_uid)


def acting_account(source: str, system: str, actor: Actor) -> Account:
    """The account an exposure finding names: the identity the leaver acted through. An actor
    known by its uid is named as the source names its accounts (an IAM user's ARN and UserId)."""
    return Account(
        source=source,
        system=system,
        account_id=actor.account_id if actor.uid and actor.account_id else actor.identity,
        username=actor.names[-1] if actor.names else actor.identity,
        enabled=True,
        kind=AccountKind.HUMAN,
        uid=actor.uid,
    )


def link_actor(source: str, system: str, actor: Actor, index: ActorIndex) -> Link:
    """The people ``actor`` stands for (see the module docstring). The link's account is the
    actor's account when it is one of the source's accounts, else :func:`acting_account`."""
    if actor.uid:
        known = index.by_uid.get((source, actor.uid))
        if known is not None:
            # An account that stands for nobody (an identity broker's user that made a session
            # named after the person it serves) lets the actor's names decide.
            return known if known.people else _by_name(source, system, actor, index) or known
    if actor.account_id:
        known = index.links.get((source, actor.account_id))
        # Not found by its uid, the account holding its name under a uid is another identity
        # (the user was deleted and the name given to someone else): not the actor's link.
        if known is not None and not (actor.uid and known.account.uid):
            return known
    return _by_name(source, system, actor, index) or Link(acting_account(source, system, actor), (), "")


def _by_name(source: str, system: str, actor: Actor, index: ActorIndex) -> Link | None:
    """The link of the first of the actor's names that finds anyone, or None."""
    account = acting_account(source, system, actor)
    for name in actor.names:
        probe = replace(account, username=name)
        found = match_account(probe, _NO_SPEC, index.people)
        if found.people:
            return Link(account, found.people, f"{found.matched_by} ({name})")
    return None


def link_actors(source: str, system: str, actors: Iterable[Actor], index: ActorIndex) -> dict[str, Link]:
    """Every actor's link, by ``Actor.identity``."""
    return {a.identity: link_actor(source, system, a, index) for a in actors}


def departed_actors(links: Mapping[str, Link], now: datetime) -> dict[str, Person]:
    """The actors that stand for exactly one departed person, with that person."""
    out: dict[str, Person] = {}
    for identity, link in links.items():
        p = link.person
        if p is not None and p.is_departed(now):
            out[identity] = p
    return out
