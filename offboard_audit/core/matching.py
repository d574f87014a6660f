"""Link accounts to HR people. Pure: no I/O, linear in people + accounts.

Order of evidence, strongest first: employee id, then emails and aliases, then usernames derived
by the configured rules, every one of them compared in one form (:func:`normalized`: NFC, without
invisible format characters, trimmed, case-insensitive) on the account side as on the HR side.
The first kind of evidence that finds anyone decides; if it finds more than one person the link
is ambiguous and nobody is guessed. An employee id and an email of the same account that find
different people make it ambiguous too: the id does not overrule the email, since acting on the
wrong one of them would revoke somebody who still works here. A ``user@domain`` username stands
for its plain username only with people who have an address in that domain.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from offboard_audit.core.protocols import MatchSpec
from offboard_audit.core.records import Account, Link, Person, identifier_key

_TEMPLATE_FIELD = re.compile(r"\{(\w+)\}")
_KNOWN_FIELDS = {"first", "last", "first_initial", "email_local", "employee_id"}


def normalized(value: str) -> str:
    """A name, email or employee id as matching compares it, account side and HR side alike:
    ``core.records.identifier_key`` (one Unicode form, no invisible characters, trimmed, any
    case), the form the stored ``person_keys`` are written in too."""
    return identifier_key(value)


def validate_username_rules(rules: Sequence[str]) -> list[str]:
    """Return a problem per rule that is neither a keyword nor a valid template."""
    problems = []
    for rule in rules:
        if rule in ("alias", "email_local"):
            continue
        fields = _TEMPLATE_FIELD.findall(rule)
        unknown = [f for f in fields if f not in _KNOWN_FIELDS]
        if not fields or unknown:
            problems.append(
                f"username rule {rule!r}: use alias, email_local or a template with "
                f"{', '.join('{' + f + '}' for f in sorted(_KNOWN_FIELDS))}"
            )
    return problems


def usernames_for(person: Person, rules: Sequence[str]) -> set[str]:
    """The usernames a person is expected to have, by the configured rules."""
    names: set[str] = set()
    email_local = person.email.split("@", 1)[0] if person.email else ""
    parts = person.name.split()
    first = parts[0] if parts else ""
    last = parts[-1] if len(parts) > 1 else ""
    values = {
        "first": first,
        "last": last,
        "first_initial": first[:1],
        "email_local": email_local,
        "employee_id": person.employee_id,
    }
    for rule in rules:
        if rule == "alias":
            names.update(a for a in person.aliases if "@" not in a)
        elif rule == "email_local":
            if email_local:
                names.add(email_local)
        else:
            fields = _TEMPLATE_FIELD.findall(rule)
            if all(values.get(f) for f in fields):
                names.add(_TEMPLATE_FIELD.sub(lambda m: values[m.group(1)], rule))
    # A name of invisible characters only is no name (normalized, it is empty).
    return {key for key in map(normalized, names) if key}


@dataclass(frozen=True)
class PeopleIndex:
    """Lookup tables from identifiers to people, built once per run."""

    by_employee_id: Mapping[str, tuple[Person, ...]]
    by_email: Mapping[str, tuple[Person, ...]]
    by_username: Mapping[str, tuple[Person, ...]]

    @classmethod
    def build(cls, people: Iterable[Person], username_rules: Sequence[str]) -> PeopleIndex:
        ids: dict[str, list[Person]] = defaultdict(list)
        emails: dict[str, list[Person]] = defaultdict(list)
        users: dict[str, list[Person]] = defaultdict(list)
        for p in people:
            ids[normalized(p.employee_id)].append(p)
            own_emails = {normalized(p.email)} if p.email else set()
            own_emails.update(normalized(a) for a in p.aliases if "@" in a)
            for e in own_emails:
                emails[e].append(p)
            for u in usernames_for(p, username_rules):
                users[u].append(p)
        return cls(
            {k: tuple(v) for k, v in ids.items()},
            {k: tuple(v) for k, v in emails.items()},
            {k: tuple(v) for k, v in users.items()},
        )


def _lookup(table: Mapping[str, tuple[Person, ...]], keys: Iterable[str]) -> tuple[Person, ...]:
    found: dict[tuple[str, str], Person] = {}
    for key in filter(None, map(normalized, keys)):  # an invisible-only value names nobody
        for person in table.get(key, ()):
            found[(person.source, person.employee_id)] = person
    return tuple(found.values())


def match_account(account: Account, spec: MatchSpec, index: PeopleIndex) -> Link:
    """Link one account to the people it belongs to (zero, one, or several = ambiguous)."""
    ids = [v for attr in spec.employee_id_attributes for v in account.attribute_values(attr) if v.strip()]
    by_id = _lookup(index.by_employee_id, ids) if ids else ()

    emails = list(account.emails)
    emails.extend(v for attr in spec.email_attributes for v in account.attribute_values(attr))
    username = account.username.strip()
    if "@" in username:
        emails.append(username)
    emails = [e for e in emails if "@" in e]
    by_email = _lookup(index.by_email, emails) if emails else ()

    if by_id:
        # The account's own owner evidence names somebody else too (a rehire under a new
        # employee id whose old account keeps the old id tag, an account handed over with only
        # its email changed): which of them it belongs to is not certain, so it is ambiguous,
        # reported and never acted on, rather than the employee id silently winning.
        named = {(p.source, p.employee_id) for p in by_id}
        others = tuple(p for p in by_email if (p.source, p.employee_id) not in named)
        if others:
            return Link(account, by_id + others, "employee_id and email")
        return Link(account, by_id, "employee_id")
    if by_email:
        return Link(account, by_email, "email")

    candidates = [username]
    # DOMAIN\user style names also carry the plain username.
    if "\\" in username:
        candidates.append(username.rsplit("\\", 1)[1])
    people = _lookup(index.by_username, [c for c in candidates if c])
    if "@" in username:
        # user@domain carries the plain username only within the domain of the person's own
        # addresses: bob@partner.example is not our bob@example.com (the address matched nobody
        # above), and taking it for them would revoke a stranger's access when bob leaves.
        local, domain = username.split("@", 1)[0], username.rsplit("@", 1)[1]
        seen = {(p.source, p.employee_id) for p in people}
        people += tuple(
            p
            for p in _lookup(index.by_username, [local] if local else [])
            if (p.source, p.employee_id) not in seen and normalized(domain) in _email_domains(p)
        )
    if people:
        return Link(account, people, "username")
    return Link(account, (), "")


def _email_domains(person: Person) -> set[str]:
    addresses = [person.email or "", *person.aliases]
    return {normalized(a.rsplit("@", 1)[1]) for a in addresses if "@" in a}


def match_all(
    accounts: Iterable[Account],
    specs: Mapping[str, MatchSpec],
    people: Iterable[Person],
    username_rules: Sequence[str],
) -> list[Link]:
    """Match every account; ``specs`` gives each source's owner attributes by source name."""
    index = PeopleIndex.build(people, username_rules)
    default = MatchSpec()
    return [match_account(a, specs.get(a.source, default), index) for a in accounts]
