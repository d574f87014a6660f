"""Plan files: a :class:`~offboard_audit.core.plan_records.Plan` as one JSON object, and the checks
``revoke --plan`` makes before it uses one. Pure.

The file carries a ``checksum`` over everything else in it and, with the audit key
(``[audit] key_env``), an HMAC ``signature``; its ``plan_id`` is derived from the findings
fingerprint and the action keys. :func:`read_plan_json` refuses a file that fails any of these,
and :func:`check_plan_file` one whose descriptive fields disagree with a plan made now.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from offboard_audit.core.audit_chain import ChainKey
from offboard_audit.core.plan_records import HeldFinding, Plan, PlannedAction, plan_id_of
from offboard_audit.core.rotation import rotate_task_json

PLAN_FORMAT = "offboard-audit-plan/1"


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def action_json(a: PlannedAction) -> dict[str, Any]:
    return {
        "key": a.key,
        "finding_id": a.finding_id,
        "rule": a.rule.value,
        "severity": a.severity,
        "person": {"employee_id": a.person, "name": a.person_name, "terminated_at": _iso(a.terminated_at)}
        if a.person
        else None,
        "source": a.source,
        "system": a.system,
        "scope": a.scope or None,
        "account": {"id": a.account_id, "name": a.username, "uid": a.account_uid or None},
        "credential": {"id": a.credential_id, "kind": a.credential_kind.value, "detail": a.detail or None},
        "action": a.action,
        "stage": a.stage.value,
        "reversible": a.reversible,
        "permissions": list(a.permissions),
        "description": a.description,
        "note": a.note or None,
    }


def held_json(h: HeldFinding) -> dict[str, Any]:
    return {
        "finding_id": h.finding_id,
        "rule": h.rule.value,
        "source": h.source,
        "account": h.username,
        "credential_id": h.credential_id,
        "person": h.person,
        "reason": h.reason,
    }


def _signed_content(body: Mapping[str, Any]) -> bytes:
    """What the signature covers: every field but ``checksum`` and ``signature``, canonical JSON."""
    content = {k: v for k, v in body.items() if k not in ("checksum", "signature")}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def plan_signature(body: Mapping[str, Any], key: ChainKey) -> dict[str, str]:
    """HMAC-SHA256 with the audit key over ``"offboard-audit-plan/1\n"`` + the signed content."""
    return {
        "alg": "hmac-sha256",
        "key_id": key.key_id,
        "value": key.sign(PLAN_FORMAT.encode("ascii"), _signed_content(body)),
    }


def plan_json(plan: Plan, key: ChainKey | None = None) -> dict[str, Any]:
    """The plan as one JSON object. With the audit key it is ``signature``-d; ``checksum``
    covers everything else in it (the signature too)."""
    body: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "plan_id": plan.plan_id,
        "created_at": plan.created_at.isoformat(),
        "findings_fingerprint": plan.fingerprint,
        "actions": [action_json(a) for a in plan.actions],
        "held": [held_json(h) for h in plan.held],
        "already_done": list(plan.done),
        "rotate_tasks": [rotate_task_json(t) for t in plan.tasks],
    }
    if key is not None:
        body["signature"] = plan_signature(body, key)
    body["checksum"] = plan_checksum(body)
    return body


def plan_checksum(body: Mapping[str, Any]) -> str:
    content = {k: v for k, v in body.items() if k != "checksum"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class PlanFileError(ValueError):
    """A plan file that must not be used: edited, malformed, unsigned or of another format."""


@dataclass(frozen=True)
class PlanFile:
    """What ``revoke --plan`` needs from a plan file: its fingerprint and action keys, and the
    actions and held findings as written (checked against a fresh plan by :func:`check_plan_file`).
    ``signed``: its signature was checked with the audit key."""

    plan_id: str
    created_at: datetime
    fingerprint: str
    keys: tuple[str, ...]
    actions: tuple[Mapping[str, Any], ...] = ()
    held: tuple[Mapping[str, Any], ...] = ()
    signed: bool = False


def _check_signature(body: Mapping[str, Any], key: ChainKey) -> None:
    sig = body.get("signature")
    if sig is None:
        raise PlanFileError(
            "not signed, but the audit key is set ([audit] key_env): plan files must be made with it; "
            "make a new plan"
        )
    if not isinstance(sig, dict) or sig.get("alg") != "hmac-sha256" or not isinstance(sig.get("value"), str):
        raise PlanFileError("signature is malformed (expected alg hmac-sha256 and a value)")
    if sig.get("key_id") != key.key_id:
        raise PlanFileError(
            f"signed with another key (key id {sig.get('key_id')}, the configured key is {key.key_id})"
        )
    expected = plan_signature(body, key)["value"]
    if not hmac.compare_digest(expected, str(sig["value"])):
        raise PlanFileError("signature does not match: the plan file was edited after it was made")


def read_plan_json(body: Any, key: ChainKey | None = None) -> PlanFile:
    """Check a parsed plan file (format, checksum, the signature when ``key`` is given, plan id)
    and extract what revoke uses. Without a key a signature is not checked (nor required): the
    descriptive fields are still checked against a fresh plan (:func:`check_plan_file`)."""
    if not isinstance(body, dict) or body.get("format") != PLAN_FORMAT:
        raise PlanFileError(f"not an offboard-audit plan file (expected format {PLAN_FORMAT!r})")
    checksum = body.get("checksum")
    if not isinstance(checksum, str) or checksum != plan_checksum(body):
        raise PlanFileError("checksum mismatch: the plan file was edited after it was made")
    if key is not None:
        _check_signature(body, key)
    try:
        actions = tuple(body["actions"])
        keys = tuple(str(a["key"]) for a in actions)
        held = tuple(body.get("held") or ())
        if not all(isinstance(x, dict) for x in (*actions, *held)):
            raise TypeError("actions and held must be objects")
        created = datetime.fromisoformat(str(body["created_at"]))
        fingerprint = str(body["findings_fingerprint"])
        plan_id = str(body["plan_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"malformed plan file: {exc}") from None
    if plan_id != plan_id_of(fingerprint, keys):
        raise PlanFileError(
            "plan_id does not match the plan's findings and actions: the plan file was edited"
        )
    return PlanFile(plan_id, created, fingerprint, keys, actions, held, signed=key is not None)


def _first_difference(path: str, written: Any, fresh: Any) -> tuple[str, Any, Any] | None:
    if isinstance(written, dict) and isinstance(fresh, dict):
        for name in sorted(set(written) | set(fresh)):
            found = _first_difference(f"{path}.{name}", written.get(name), fresh.get(name))
            if found is not None:
                return found
        return None
    if isinstance(written, list) and isinstance(fresh, list) and len(written) == len(fresh):
        for i, (w, f) in enumerate(zip(written, fresh, strict=True)):
            found = _first_difference(f"{path}[{i}]", w, f)
            if found is not None:
                return found
        return None
    return None if written == fresh else (path, written, fresh)


def check_plan_file(plan_file: PlanFile, fresh: Plan) -> None:
    """Refuse a plan file whose descriptive fields disagree with ``fresh`` (the plan made now
    from the same findings), naming the first field that differs.

    Only when the findings are the same (same fingerprint): otherwise the file is stale and the
    engine refuses it as such. Actions of the file that the fresh plan no longer has (applied
    since, or held now) are not compared; the engine leaves them out anyway.
    """
    if plan_file.fingerprint != fresh.fingerprint:
        return
    _check_section("actions", plan_file.actions, "key", {a.key: action_json(a) for a in fresh.actions})
    _check_section("held", plan_file.held, "finding_id", {h.finding_id: held_json(h) for h in fresh.held})


def _check_section(
    name: str, written: Sequence[Mapping[str, Any]], id_field: str, fresh: Mapping[str, dict[str, Any]]
) -> None:
    """Compare each written entry of one section with the fresh entry of the same id, if any."""
    for i, entry in enumerate(written):
        current = fresh.get(str(entry.get(id_field)))
        if current is None:
            continue
        diff = _first_difference(f"{name}[{i}]", dict(entry), current)
        if diff is not None:
            field, was, is_now = diff
            raise PlanFileError(
                f"{field} is {was!r} in the plan file but {is_now!r} in a plan made now from the same "
                "findings: the plan file was edited; make a new plan"
            )
