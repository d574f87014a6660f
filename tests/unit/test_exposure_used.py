"""ExposureHow.USED (pure rules): a key whose material never leaves its system is exposed by its
use (a signature the leaver made stays valid while that version is enabled), high and never
critical; a creation alone exposes nothing; a version created after the use, with the used one
retired, ends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from offboard_audit.core.exposure import Actor, ExposureEvent, ObjectRef, SecretState
from offboard_audit.core.exposure_actors import ActorIndex, link_actors
from offboard_audit.core.exposure_rules import ExposureInputs, SecretIndex, evaluate_exposure
from offboard_audit.core.records import CredentialKind, ExposureHow, Person, PersonStatus, Severity

NOW = datetime(2025, 6, 1, tzinfo=UTC)
LEFT = NOW - timedelta(days=10)
USED_AT = NOW - timedelta(days=20)
KEY = "projects/p/locations/global/keyRings/r/cryptoKeys/signer"
CAROL = Person("E3", "carol@example.com", "Carol", PersonStatus.TERMINATED, terminated_at=LEFT, source="hr")
ACTOR = Actor("user:carol@example.com", "user", names=("carol@example.com",))


def _event(how: ExposureHow, at: datetime, event_id: str) -> ExposureEvent:
    return ExposureEvent(
        "gcp", "p", event_id, at, how.value, how, ACTOR, ObjectRef("p", CredentialKind.KMS_KEY, KEY)
    )


def _key(current: datetime, oldest: datetime) -> SecretState:
    return SecretState(
        "gcp",
        "p",
        CredentialKind.KMS_KEY,
        KEY,
        current_version_created_at=current,
        oldest_enabled_version_created_at=oldest,
        exportable=False,
        signing=True,
    )


def _findings(events: list[ExposureEvent], key: SecretState) -> list[tuple[str, Severity]]:
    index = ActorIndex.build([], [CAROL], ())
    links = link_actors("gcp", "gcp_iam", [ACTOR], index)
    inputs = ExposureInputs("gcp", "gcp_iam", events, links, SecretIndex([key]), {}, index)
    return [(f.credential.credential_id, f.severity) for f in evaluate_exposure(inputs, NOW) if f.credential]


def test_a_use_of_a_key_whose_material_stays_put_is_a_high_finding_not_critical() -> None:
    old = USED_AT - timedelta(days=100)
    events = [_event(ExposureHow.CREATED, old, "c"), _event(ExposureHow.USED, USED_AT, "u")]
    assert _findings(events, _key(old, old)) == [(KEY, Severity.HIGH)]


def test_creating_such_a_key_alone_exposes_nothing() -> None:
    old = USED_AT - timedelta(days=100)
    assert _findings([_event(ExposureHow.CREATED, old, "c")], _key(old, old)) == []


def test_a_new_version_with_the_used_one_retired_ends_the_exposure() -> None:
    old = USED_AT - timedelta(days=100)
    new = USED_AT + timedelta(days=1)
    events = [_event(ExposureHow.USED, USED_AT, "u")]
    assert _findings(events, _key(new, old)) == [(KEY, Severity.HIGH)]  # the used version still signs
    assert _findings(events, _key(new, new)) == []
