"""The two exposure rules. Pure: takes ``now``, does no I/O. Actors are matched to people in
``exposure_actors.py``.

Rules (design.md):

* ``secret-exposed-to-leaver`` (high; critical when the secret is a signing key whose material
  the leaver had): a departed person read, created or exported a secret that is still enabled
  and whose current version (and, where older versions stay usable, its oldest enabled one) was
  created before their last such access: not rotated since. For a key whose material cannot
  leave the system (an AWS-generated KMS key) only an export counts, a use of the key
  (``used``: a signature made with it stays valid while that version is enabled; high, never
  critical: the material stayed put), a grant to the leaver that is still live, or one the
  leaver made to an identity of another account that is still live, or a key policy the leaver
  set that lets another account use it while the policy in force still does (high). A secret
  that is gone or disabled raises nothing; a secret the inventory does not list is gone.
* ``persistence-left-by-leaver`` (high): an IAM user, access key, login profile, role trust
  policy or attached policy that a departed person created for *another* identity (not one of
  their own accounts) and that is still in place.

One finding per (person, secret) or (person, object), whichever identity they acted through;
its id is stable across runs (the person and the object, not the acting identity).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from offboard_audit.core import selectors
from offboard_audit.core.exposure import (
    PERSISTENCE_KINDS,
    POLICY_GRANTEE_PREFIX,
    SECRET_KINDS,
    ExposureEvent,
    ObjectRef,
    PersistenceState,
    SecretState,
    exposed_through,
    exposure_scope,
    secret_detail,
)
from offboard_audit.core.exposure_actors import ActorIndex, departed_actors, person_key
from offboard_audit.core.records import (
    Credential,
    CredentialKind,
    Exemption,
    ExposureAccess,
    ExposureHow,
    Finding,
    FindingStatus,
    Link,
    OwnerVia,
    Person,
    RotateOwner,
    Rule,
    Severity,
    finding_id,
)

# Accesses that hand over the material of an exportable secret.
_MATERIAL = frozenset({ExposureHow.READ, ExposureHow.CREATED, ExposureHow.EXPORTED})


def _fmt(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def rotate_owner(owner_hint: str | None, person: Person) -> RotateOwner:
    """Who rotates: the secret's owner tag, else the leaver's manager, else nobody yet."""
    if owner_hint and owner_hint.strip():
        return RotateOwner(OwnerVia.OWNER_TAG, owner_hint.strip())
    if person.manager_email:
        return RotateOwner(OwnerVia.MANAGER, person.manager_email)
    return RotateOwner(OwnerVia.UNASSIGNED, None)


@dataclass(frozen=True)
class ExposureInputs:
    """Everything the rules read for one source: its events by departed people (any order),
    their actors' links, the inventory, and the run's context."""

    source: str
    system: str
    events: Sequence[ExposureEvent]
    links: Mapping[str, Link]
    secrets: SecretIndex
    objects: Mapping[tuple[str, str, str], PersistenceState]
    index: ActorIndex
    # (source, exposure scope) pairs whose events or inventory are from an earlier run.
    stale_scopes: frozenset[tuple[str, str]] = frozenset()


class SecretIndex:
    """The inventory by every id an event may use (``SecretState.secret_id`` and its aliases)."""

    def __init__(self, secrets: Iterable[SecretState]) -> None:
        self.by_key: dict[tuple[str, str, str], SecretState] = {}
        self._ids: dict[tuple[str, str, str], list[SecretState]] = defaultdict(list)
        for s in secrets:
            self.by_key[s.key] = s
            for name in dict.fromkeys((s.secret_id, *s.aliases)):
                self._ids[(s.scope, s.kind.value, name)].append(s)

    def resolve(self, ref: ObjectRef) -> list[SecretState]:
        """The secrets ``ref`` names (several for a read by path); none when they are gone."""
        return list(self._ids.get(ref.key, ()))


def _accesses(events: Sequence[ExposureEvent]) -> tuple[ExposureAccess, ...]:
    ordered = sorted(events, key=lambda e: (e.at, e.event_id))
    return tuple(ExposureAccess(e.at, e.how, e.event_id, e.action) for e in ordered)


def _person_id(p: Person) -> str:
    return f"person:{p.source}/{p.employee_id}"


def _granted_away(secret: SecretState, events: Sequence[ExposureEvent]) -> list[ExposureEvent]:
    """The grants the person made to an identity outside the key's account (``ObjectRef.owner``
    of a ``changed-access`` event) that are still live: its holder uses the key from there."""
    # A key policy in force that lets any account use the key still lets in the account the
    # person's policy named: that door is open whoever widened it since.
    any_account = f"{POLICY_GRANTEE_PREFIX}*" in secret.grantees
    return [
        e
        for e in events
        if e.how is ExposureHow.CHANGED_ACCESS
        and e.target.owner
        and (
            e.target.owner in secret.grantees
            or (any_account and e.target.owner.startswith(POLICY_GRANTEE_PREFIX))
        )
    ]


def _exposed(secret: SecretState, events: Sequence[ExposureEvent], granted: bool) -> list[ExposureEvent]:
    """The events that still expose ``secret``: accesses to its material made at or after the
    version(s) still usable were created, and live grants the person made to another account;
    every access when a grant to the person is live."""
    if not secret.enabled:
        return []
    if granted:
        return list(events)
    away = _granted_away(secret, events)
    # A use of a key (ExposureHow.USED: a signature made with it) exposes it whether or not its
    # material can leave the system: what was signed stays valid until that version is retired.
    material = [
        e
        for e in events
        if e.how in (ExposureHow.EXPORTED, ExposureHow.USED) or (secret.exportable and e.how in _MATERIAL)
    ]
    versions = [t for t in (secret.current_version_created_at, secret.oldest_enabled_version_created_at) if t]
    usable_since = min(versions) if versions else None
    if usable_since is None:
        return material + away  # no version date known: nothing proves it was rotated
    # A version made after the access ends it; the version a write made is not made after it.
    # A grant ends only when it is retired or revoked, whatever the versions.
    return [e for e in material if exposed_through(e.at, e.how) >= usable_since] + away


def evaluate_exposure(
    inputs: ExposureInputs,
    now: datetime,
    exemptions: Sequence[Exemption] = (),
    first_seen: Mapping[str, datetime] | None = None,
) -> list[Finding]:
    """The findings of both exposure rules for one source (see the module docstring)."""
    seen = first_seen or {}
    leavers = departed_actors(inputs.links, now)
    # (person, object key) -> the events and actors behind them
    grouped: dict[tuple[tuple[str, str], tuple[str, str, str]], list[ExposureEvent]] = defaultdict(list)
    people: dict[tuple[str, str], Person] = {}
    for e in inputs.events:
        person = leavers.get(e.actor.identity)
        if person is None:
            continue
        people[person_key(person)] = person
        if e.target.kind in SECRET_KINDS:
            for secret in inputs.secrets.resolve(e.target):
                grouped[(person_key(person), secret.key)].append(e)
        else:
            grouped[(person_key(person), e.target.key)].append(e)

    ctx = _Context(inputs, now, exemptions, seen)
    findings: list[Finding] = []
    for (pk, key), events in sorted(grouped.items()):
        person = people[pk]
        kind = events[0].target.kind
        if kind in SECRET_KINDS:
            f = _secret_finding(ctx, person, key, events)
        elif kind in PERSISTENCE_KINDS:
            f = _persistence_finding(ctx, person, key, events)
        else:
            f = None
        if f is not None:
            findings.append(f)
    return findings


@dataclass(frozen=True)
class _Context:
    """What every exposure finding of one :func:`evaluate_exposure` is made with."""

    inputs: ExposureInputs
    now: datetime
    exemptions: Sequence[Exemption]
    seen: Mapping[str, datetime]


def _finding(
    ctx: _Context,
    rule: Rule,
    severity: Severity,
    person: Person,
    events: Sequence[ExposureEvent],
    credential: Credential,
    reason: str,
    owner: RotateOwner,
) -> Finding:
    inputs, now = ctx.inputs, ctx.now
    last = max(events, key=lambda e: (e.at, e.event_id))
    link = inputs.links[last.actor.identity]
    scope = exposure_scope(last.target.scope)
    account = replace(link.account, scope=scope)
    fid = finding_id(
        rule, inputs.source, _person_id(person), f"{credential.kind.value}:{credential.credential_id}"
    )
    exemption = selectors.active_exemption(ctx.exemptions, account, credential, now)
    assert person.terminated_at is not None
    return Finding(
        finding_id=fid,
        rule=rule,
        severity=severity,
        status=FindingStatus.EXEMPTED if exemption else FindingStatus.OPEN,
        account=account,
        person=person,
        credential=credential,
        first_seen=ctx.seen.get(fid, now),
        # Rotation is a task from the day the person left; there is no grace period to wait out.
        due_at=person.terminated_at,
        reason=reason,
        exemption_id=exemption.exemption_id if exemption else None,
        stale=(inputs.source, scope) in inputs.stale_scopes or (inputs.source, "*") in inputs.stale_scopes,
        exposure=_accesses(events),
        owner=owner,
    )


def _who(person: Person) -> str:
    assert person.terminated_at is not None
    return f"{person.name or person.employee_id} (left {_fmt(person.terminated_at)})"


def _secret_finding(
    ctx: _Context, person: Person, key: tuple[str, str, str], events: Sequence[ExposureEvent]
) -> Finding | None:
    inputs = ctx.inputs
    secret = inputs.secrets.by_key.get(key)
    if secret is None:
        return None  # deleted (or never inventoried: its scope failed and has no stored state)
    identities = {e.actor.identity for e in events}
    own = {inputs.links[i].account.account_id for i in identities}
    granted = any(g in identities or g in own for g in secret.grantees)
    exposing = _exposed(secret, events, granted)
    if not exposing:
        return None
    last = max(exposing, key=lambda e: (e.at, e.event_id))
    carried = any(
        e.how is ExposureHow.EXPORTED or (secret.exportable and e.how in _MATERIAL) for e in exposing
    )
    severity = Severity.CRITICAL if secret.signing and carried else Severity.HIGH
    version = (
        f"its current version dates from {_fmt(secret.current_version_created_at)}"
        if secret.current_version_created_at
        else "no version date is known"
    )
    what = f"{secret.kind.value} {secret.name or secret.secret_id}"
    hows = ", ".join(sorted({f"{e.action} ({e.how.value})" for e in exposing}))
    reason = (
        f"{_who(person)} had access to {what}: {len(exposing)} access(es) by {hows}, the last on "
        f"{_fmt(last.at)} (event {last.event_id}); {version}, not rotated since"
    )
    if granted:
        reason += "; a grant to them is still live"
    away = sorted(
        {e.target.owner for e in exposing if e.how is ExposureHow.CHANGED_ACCESS and e.target.owner}
    )
    by_grant = [a for a in away if not a.startswith(POLICY_GRANTEE_PREFIX)]
    by_policy = [a.removeprefix(POLICY_GRANTEE_PREFIX) for a in away if a.startswith(POLICY_GRANTEE_PREFIX)]
    if by_grant and not granted:
        reason += f"; a grant they made to {', '.join(by_grant)} (another account) is still live"
    if by_policy and not granted:
        reason += (
            f"; the key policy they set lets account {', '.join(by_policy)} use it, and the policy "
            "in force still does"
        )
    if severity is Severity.CRITICAL:
        reason += "; it is a signing key whose material they had"
    credential = Credential(
        source=inputs.source,
        account_id=inputs.links[last.actor.identity].account.account_id,
        credential_id=secret.secret_id,
        kind=secret.kind,
        active=secret.enabled,
        created_at=secret.current_version_created_at or secret.created_at,
        last_used_at=last.at,
        # The rotate action takes a version made after this for a rotation (exposed_until).
        detail=secret_detail(
            secret.name or secret.secret_id,
            max(exposed_through(e.at, e.how) for e in exposing),
            secret.rotation_configured,
            access_given_to=() if granted else away,
            # Access given away outlives a rotation; anything else exposing the secret ends with one.
            material=granted
            or any(not (e.how is ExposureHow.CHANGED_ACCESS and e.target.owner) for e in exposing),
        ),
        scope=exposure_scope(secret.scope),
    )
    owner = rotate_owner(secret.owner, person)
    return _finding(
        ctx,
        Rule.SECRET_EXPOSED_TO_LEAVER,
        severity,
        person,
        events,
        credential,
        reason,
        owner,
    )


def _own_object(ref: ObjectRef, person: Person, inputs: ExposureInputs, identities: set[str]) -> bool:
    """Whether ``ref`` belongs to one of ``person``'s own identities (self-service: rotating one's
    own key is no backdoor)."""
    if not ref.owner:
        return False
    owner = ref.owner.casefold()
    for identity in identities:
        link = inputs.links[identity]
        if link.account.username.casefold() == owner:
            return True
    link_of_owner = inputs.index.by_username.get((inputs.source, ref.scope, owner))
    if link_of_owner is None:
        return False
    return any(person_key(p) == person_key(person) for p in link_of_owner.people)


_PERSISTENCE_WHAT = {
    CredentialKind.ACCOUNT: "IAM user",
    CredentialKind.ACCESS_KEY: "access key",
    CredentialKind.PASSWORD: "console password (login profile)",
    CredentialKind.TRUST_POLICY: "role trust policy",
    CredentialKind.IAM_BINDING: "attached policy",
    CredentialKind.SERVICE_ACCOUNT_KEY: "service-account key",
    CredentialKind.DEPLOY_KEY: "deploy key",
    CredentialKind.SIGNING_CERTIFICATE: "certificate",
}


def _persistence_finding(
    ctx: _Context, person: Person, key: tuple[str, str, str], events: Sequence[ExposureEvent]
) -> Finding | None:
    inputs = ctx.inputs
    state = inputs.objects.get(key)
    if state is None or not state.present:
        return None
    ref = state.ref
    identities = {e.actor.identity for e in events}
    if _own_object(ref, person, inputs, identities):
        return None
    last = max(events, key=lambda e: (e.at, e.event_id))
    what = _PERSISTENCE_WHAT.get(ref.kind, ref.kind.value)
    target = f" of {ref.owner}" if ref.owner and ref.owner != ref.object_id else ""
    reason = (
        f"{_who(person)} made {what} {ref.object_id}{target} by {last.action} on {_fmt(last.at)} "
        f"(event {last.event_id}); it is still in place"
    )
    if state.detail:
        reason += f" ({state.detail})"
    owner_link = inputs.index.by_username.get((inputs.source, ref.scope, ref.owner.casefold()))
    credential = Credential(
        source=inputs.source,
        account_id=owner_link.account.account_id if owner_link else (ref.owner or ref.object_id),
        credential_id=ref.object_id,
        kind=ref.kind,
        active=True,
        created_at=min(e.at for e in events),
        detail=f"{what}{target}; made by {last.action} (event {last.event_id})",
        scope=exposure_scope(ref.scope),
    )
    # The system's own answer to "whose is this?" (a repository's admins) comes first.
    owner = (
        RotateOwner(OwnerVia.OBJECT_ADMINS, ", ".join(state.remove_by[:5]))
        if state.remove_by
        else rotate_owner(None, person)
    )
    return _finding(
        ctx,
        Rule.PERSISTENCE_LEFT_BY_LEAVER,
        Rule.PERSISTENCE_LEFT_BY_LEAVER.severity,
        person,
        events,
        credential,
        reason,
        owner,
    )


def persistence_refs(events: Iterable[ExposureEvent], leavers: Mapping[str, Person]) -> list[ObjectRef]:
    """The objects the inventory must check: those the departed actors' events made (deduplicated;
    the newest event's fingerprint wins)."""
    refs: dict[tuple[str, str, str], tuple[datetime, ObjectRef]] = {}
    for e in events:
        if e.actor.identity not in leavers or e.target.kind not in PERSISTENCE_KINDS:
            continue
        old = refs.get(e.target.key)
        if old is None or e.at >= old[0]:
            refs[e.target.key] = (e.at, e.target)
    return [ref for _at, ref in sorted(refs.values(), key=lambda x: x[1].key)]
