"""Plan files field by field (``plan --output``, ``revoke --plan``): every field a plan file
carries, its checksum and signature computed here with ``hashlib``/``hmac``, every reason a plan
file is refused (the operator reads these), and the descriptive-field check of held findings.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from offboard_audit.core.actions import Stage
from offboard_audit.core.audit_chain import ChainKey
from offboard_audit.core.plan_file import PlanFile, PlanFileError, check_plan_file, plan_json, read_plan_json
from offboard_audit.core.plan_records import HeldFinding, Plan, PlannedAction
from offboard_audit.core.records import CredentialKind, OwnerVia, RotateOwner, Rule
from offboard_audit.core.rotation import RotateTask, rotate_task_json

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEFT = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
SECRET = b"0123456789abcdef0123456789abcdef"
FINGERPRINT = "f" * 64

ZOE = PlannedAction(
    source="aws-main",
    system="aws",
    scope="111111111111",
    account_id="acct-zoe",
    username="zoë",
    credential_id="AKIA1",
    credential_kind=CredentialKind.ACCESS_KEY,
    detail="created 2024",
    account_uid="AIDA-zoe",
    finding_id="f-1",
    rule=Rule.USED_AFTER_TERMINATION,
    severity="critical",
    person="E7",
    person_name="Zoë Ünal",
    terminated_at=LEFT,
    action="deactivate_key",
    stage=Stage.DISABLE,
    reversible=True,
    permissions=("iam:UpdateAccessKey", "iam:ListAccessKeys"),
    description="deactivate the access key",
    note="revoked at 2026-02-02T00:00:00+00:00 but seen active again since",
)
# No person, scope, identity, detail or note: each of those is null in the file.
SVC = PlannedAction(
    source="corp-ldap",
    system="ldap",
    scope="",
    account_id="uid=svc,ou=people",
    username="svc",
    credential_id="account",
    credential_kind=CredentialKind.ACCOUNT,
    detail="",
    account_uid="",
    finding_id="f-2",
    rule=Rule.CREDENTIAL_AFTER_TERMINATION,
    severity="high",
    person=None,
    person_name="",
    terminated_at=None,
    action="lock",
    stage=Stage.DELETE,
    reversible=False,
    permissions=(),
    description="delete the entry",
)
HELD = HeldFinding(
    "f-3", Rule.AMBIGUOUS_OWNER, "corp-ldap", "jdoe", None, None, "ambiguous-owner: never revoked"
)
TASK = RotateTask(
    finding_id="f-4",
    rule=Rule.SECRET_EXPOSED_TO_LEAVER,
    severity="high",
    task="rotate",
    source="aws-main",
    system="aws",
    scope="111111111111",
    object_id="arn:aws:secretsmanager:eu-west-1:111111111111:secret:db",
    kind="secret",
    detail="",
    person="E7",
    person_name="Zoë Ünal",
    terminated_at=LEFT,
    owner=RotateOwner(OwnerVia.OWNER_TAG, "owner@x.org"),
    last_access=LEFT,
)


def the_plan() -> Plan:
    return Plan(NOW, FINGERPRINT, (ZOE, SVC), held=(HELD,), done=("f-9:lock",), tasks=(TASK,))


def expected_plan_id(fingerprint: str, keys: list[str]) -> str:
    return "p-" + hashlib.sha256("\n".join([fingerprint, *keys]).encode("utf-8")).hexdigest()[:16]


def canonical(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def checksum_of(body: dict[str, Any]) -> str:
    return (
        "sha256:" + hashlib.sha256(canonical({k: v for k, v in body.items() if k != "checksum"})).hexdigest()
    )


def resealed(body: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """What someone who edits a file does next: re-sign (with the key, if they hold it) and re-checksum."""
    out = {k: v for k, v in body.items() if k != "checksum"}
    if key is not None:
        content = {k: v for k, v in out.items() if k != "signature"}
        out["signature"] = {
            "alg": "hmac-sha256",
            "key_id": ChainKey(key).key_id,
            "value": hmac.new(
                key, b"offboard-audit-plan/1\n" + canonical(content), hashlib.sha256
            ).hexdigest(),
        }
    out["checksum"] = checksum_of(out)
    return out


def file_of(plan: Plan | None = None, key: bytes | None = None) -> dict[str, Any]:
    body = plan_json(plan or the_plan(), ChainKey(key) if key else None)
    return json.loads(json.dumps(body))


# --- what a plan file carries -------------------------------------------------------------------------


def test_a_plan_file_carries_every_field_of_every_action_held_finding_and_task() -> None:
    body = file_of()
    plan_id = expected_plan_id(FINGERPRINT, ["f-1:deactivate_key", "f-2:lock"])
    assert body == {
        "format": "offboard-audit-plan/1",
        "plan_id": plan_id,
        "created_at": "2026-03-01T12:00:00+00:00",
        "findings_fingerprint": FINGERPRINT,
        "actions": [
            {
                "key": "f-1:deactivate_key",
                "finding_id": "f-1",
                "rule": "used-after-termination",
                "severity": "critical",
                "person": {
                    "employee_id": "E7",
                    "name": "Zoë Ünal",
                    "terminated_at": "2026-02-01T09:30:00+00:00",
                },
                "source": "aws-main",
                "system": "aws",
                "scope": "111111111111",
                "account": {"id": "acct-zoe", "name": "zoë", "uid": "AIDA-zoe"},
                "credential": {"id": "AKIA1", "kind": "access_key", "detail": "created 2024"},
                "action": "deactivate_key",
                "stage": "disable",
                "reversible": True,
                "permissions": ["iam:UpdateAccessKey", "iam:ListAccessKeys"],
                "description": "deactivate the access key",
                "note": "revoked at 2026-02-02T00:00:00+00:00 but seen active again since",
            },
            {
                "key": "f-2:lock",
                "finding_id": "f-2",
                "rule": "credential-after-termination",
                "severity": "high",
                "person": None,
                "source": "corp-ldap",
                "system": "ldap",
                "scope": None,
                "account": {"id": "uid=svc,ou=people", "name": "svc", "uid": None},
                "credential": {"id": "account", "kind": "account", "detail": None},
                "action": "lock",
                "stage": "delete",
                "reversible": False,
                "permissions": [],
                "description": "delete the entry",
                "note": None,
            },
        ],
        "held": [
            {
                "finding_id": "f-3",
                "rule": "ambiguous-owner",
                "source": "corp-ldap",
                "account": "jdoe",
                "credential_id": None,
                "person": None,
                "reason": "ambiguous-owner: never revoked",
            }
        ],
        "already_done": ["f-9:lock"],
        "rotate_tasks": [json.loads(json.dumps(rotate_task_json(TASK)))],
        "checksum": body["checksum"],
    }
    assert body["checksum"] == checksum_of(body)


def test_a_person_without_a_termination_date_has_a_null_one() -> None:
    plan = Plan(NOW, FINGERPRINT, (PlannedAction(**{**ZOE.__dict__, "terminated_at": None}),))
    assert file_of(plan)["actions"][0]["person"] == {
        "employee_id": "E7",
        "name": "Zoë Ünal",
        "terminated_at": None,
    }


def test_the_checksum_covers_the_text_as_written_not_escaped() -> None:
    body = plan_json(the_plan())
    content = {k: v for k, v in body.items() if k != "checksum"}
    raw = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert "Zoë Ünal" in raw
    assert body["checksum"] == "sha256:" + hashlib.sha256(raw.encode("utf-8")).hexdigest()


def test_a_signed_plan_file_carries_an_hmac_over_its_content_as_written() -> None:
    body = file_of(key=SECRET)
    content = {k: v for k, v in body.items() if k not in ("checksum", "signature")}
    raw = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert body["signature"] == {
        "alg": "hmac-sha256",
        "key_id": hmac.new(SECRET, b"offboard-audit/key-id", hashlib.sha256).hexdigest()[:16],
        "value": hmac.new(SECRET, b"offboard-audit-plan/1\n" + raw, hashlib.sha256).hexdigest(),
    }
    # The checksum covers the signature too.
    assert body["checksum"] == checksum_of(body)


# --- reading it back -----------------------------------------------------------------------------


def test_a_plan_file_reads_back_with_its_id_time_fingerprint_keys_actions_and_held_findings() -> None:
    body = file_of()
    parsed = read_plan_json(copy.deepcopy(body))
    assert parsed == PlanFile(
        plan_id=body["plan_id"],
        created_at=NOW,
        fingerprint=FINGERPRINT,
        keys=("f-1:deactivate_key", "f-2:lock"),
        actions=tuple(body["actions"]),
        held=tuple(body["held"]),
        signed=False,
    )
    assert read_plan_json(file_of(key=SECRET), ChainKey(SECRET)).signed is True


def test_a_plan_file_without_held_findings_reads_back_with_none() -> None:
    body = file_of()
    del body["held"]
    assert read_plan_json(resealed(body)).held == ()


def refusal(body: Any, key: bytes | None = None) -> str:
    with pytest.raises(PlanFileError) as caught:
        read_plan_json(body, ChainKey(key) if key else None)
    return str(caught.value)


@pytest.mark.parametrize("body", [[], "plan", {"format": "offboard-audit-plan/2"}, {}])
def test_anything_but_a_plan_file_of_this_format_is_refused(body: Any) -> None:
    assert refusal(body) == "not an offboard-audit plan file (expected format 'offboard-audit-plan/1')"


@pytest.mark.parametrize("checksum", [None, 42, "sha256:" + "0" * 64])
def test_a_missing_or_wrong_checksum_is_refused(checksum: Any) -> None:
    body = file_of()
    body["checksum"] = checksum
    assert refusal(body) == "checksum mismatch: the plan file was edited after it was made"


def test_an_edited_plan_id_is_refused() -> None:
    body = file_of()
    body["plan_id"] = "p-0000000000000000"
    assert (
        refusal(resealed(body))
        == "plan_id does not match the plan's findings and actions: the plan file was edited"
    )


def test_a_dropped_action_changes_the_plan_id_so_the_file_is_refused() -> None:
    body = file_of()
    body["actions"] = body["actions"][:1]
    assert refusal(resealed(body)).startswith("plan_id does not match")


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda b: b.pop("created_at"), "malformed plan file: 'created_at'"),
        (
            lambda b: b.update(created_at="yesterday"),
            "malformed plan file: Invalid isoformat string: 'yesterday'",
        ),
        (lambda b: b.pop("actions"), "malformed plan file: 'actions'"),
        (lambda b: b.update(actions=[{"action": "lock"}]), "malformed plan file: 'key'"),
        (lambda b: b.update(held=["f-3"]), "malformed plan file: actions and held must be objects"),
        (lambda b: b.pop("findings_fingerprint"), "malformed plan file: 'findings_fingerprint'"),
        (lambda b: b.pop("plan_id"), "malformed plan file: 'plan_id'"),
    ],
)
def test_a_malformed_plan_file_is_refused_saying_what_is_wrong(edit: Any, why: str) -> None:
    body = file_of()
    edit(body)
    assert refusal(resealed(body)) == why


# --- signatures -----------------------------------------------------------------------------------


def test_with_the_key_an_unsigned_plan_file_is_refused() -> None:
    assert refusal(file_of(), SECRET) == (
        "not signed, but the audit key is set ([audit] key_env): plan files must be made with it; make a new plan"
    )


@pytest.mark.parametrize(
    "signature",
    [
        "deadbeef",
        {"alg": "hmac-md5", "key_id": ChainKey(SECRET).key_id, "value": "00"},
        {"alg": "hmac-sha256", "key_id": ChainKey(SECRET).key_id, "value": 5},
        {"alg": "hmac-sha256", "key_id": ChainKey(SECRET).key_id},
    ],
    ids=["not-an-object", "other-alg", "value-not-text", "no-value"],
)
def test_a_malformed_signature_is_refused(signature: Any) -> None:
    body = file_of(key=SECRET)
    body["signature"] = signature
    assert refusal(resealed(body), SECRET) == "signature is malformed (expected alg hmac-sha256 and a value)"


def test_a_plan_file_signed_with_another_key_is_refused_naming_both_key_ids() -> None:
    other = b"x" * 32
    body = file_of(key=other)
    assert refusal(body, SECRET) == (
        f"signed with another key (key id {ChainKey(other).key_id}, the configured key is {ChainKey(SECRET).key_id})"
    )


def test_a_plan_file_edited_and_rechecksummed_without_the_key_is_refused() -> None:
    body = file_of(key=SECRET)
    body["actions"][0]["description"] = "harmless read-only check"
    assert (
        refusal(resealed(body), SECRET)
        == "signature does not match: the plan file was edited after it was made"
    )


def test_without_the_key_a_signature_is_neither_checked_nor_required() -> None:
    body = file_of(key=b"x" * 32)
    assert read_plan_json(body).signed is False


# --- the descriptive fields against a plan made now --------------------------------------------------


def edited_refusal(body: dict[str, Any]) -> str:
    parsed = read_plan_json(resealed(body))
    with pytest.raises(PlanFileError) as caught:
        check_plan_file(parsed, the_plan())
    return str(caught.value)


def test_an_edited_held_reason_is_refused_naming_the_field_and_both_values() -> None:
    body = file_of()
    body["held"][0]["reason"] = "nothing to see"
    assert edited_refusal(body) == (
        "held[0].reason is 'nothing to see' in the plan file but 'ambiguous-owner: never revoked' in a plan made "
        "now from the same findings: the plan file was edited; make a new plan"
    )


def test_held_entries_the_plan_no_longer_has_are_skipped_and_the_rest_still_checked() -> None:
    body = file_of()
    body["held"] = [{"finding_id": "f-gone", "reason": "x"}, {**body["held"][0], "account": "root"}]
    assert edited_refusal(body).startswith("held[1].account is 'root' in the plan file but 'jdoe'")


def test_actions_the_plan_no_longer_has_are_skipped_and_the_rest_still_checked() -> None:
    body = file_of()
    gone = {**body["actions"][1], "key": "f-gone:lock", "finding_id": "f-gone"}
    body["actions"] = [gone, body["actions"][0]]
    body["actions"][1]["severity"] = "low"
    body["plan_id"] = expected_plan_id(FINGERPRINT, ["f-gone:lock", "f-1:deactivate_key"])
    assert edited_refusal(body).startswith("actions[1].severity is 'low' in the plan file but 'critical'")


def test_a_field_removed_from_an_action_is_named() -> None:
    body = file_of()
    del body["actions"][0]["description"]
    assert edited_refusal(body).startswith(
        "actions[0].description is None in the plan file but 'deactivate the access key'"
    )


def test_a_field_added_to_an_action_is_named() -> None:
    body = file_of()
    body["actions"][0]["also"] = "delete everything"
    assert edited_refusal(body).startswith("actions[0].also is 'delete everything' in the plan file but None")


def test_a_person_added_to_an_action_without_one_is_named() -> None:
    body = file_of()
    body["actions"][1]["person"] = {"employee_id": "E1"}
    assert edited_refusal(body).startswith(
        "actions[1].person is {'employee_id': 'E1'} in the plan file but None"
    )


def test_a_permission_added_to_an_action_is_named_as_the_whole_list() -> None:
    body = file_of()
    body["actions"][0]["permissions"].append("iam:DeleteUser")
    assert edited_refusal(body) == (
        "actions[0].permissions is ['iam:UpdateAccessKey', 'iam:ListAccessKeys', 'iam:DeleteUser'] in the plan file "
        "but ['iam:UpdateAccessKey', 'iam:ListAccessKeys'] in a plan made now from the same findings: the plan file "
        "was edited; make a new plan"
    )


def test_a_list_replaced_by_text_is_named() -> None:
    body = file_of()
    body["actions"][0]["permissions"] = "iam:*"
    assert edited_refusal(body).startswith("actions[0].permissions is 'iam:*' in the plan file but [")


def test_an_untouched_plan_file_passes_the_check() -> None:
    check_plan_file(read_plan_json(file_of()), the_plan())


def test_a_plan_file_of_other_findings_is_not_compared_here() -> None:
    body = file_of()
    body["actions"][0]["description"] = "edited"
    parsed = read_plan_json(resealed(body))
    check_plan_file(parsed, Plan(NOW, "0" * 64, (ZOE, SVC), held=(HELD,)))


# --- narrowing a plan -----------------------------------------------------------------------------


def test_a_plan_narrowed_to_some_keys_keeps_their_order_and_drops_the_rest() -> None:
    plan = the_plan()
    assert plan.only(["f-2:lock", "f-1:deactivate_key"]).actions == (ZOE, SVC)
    narrowed = plan.only(["f-2:lock", "f-x:lock"])
    assert narrowed.actions == (SVC,)
    assert (narrowed.held, narrowed.done, narrowed.tasks, narrowed.fingerprint) == (
        plan.held,
        plan.done,
        plan.tasks,
        plan.fingerprint,
    )
    assert narrowed.plan_id == expected_plan_id(FINGERPRINT, ["f-2:lock"])
    assert plan.only([]).actions == ()


def test_a_plan_id_is_p_and_16_hex_of_the_fingerprint_and_keys() -> None:
    assert re.fullmatch(r"p-[0-9a-f]{16}", the_plan().plan_id)
    assert the_plan().plan_id == expected_plan_id(FINGERPRINT, ["f-1:deactivate_key", "f-2:lock"])
