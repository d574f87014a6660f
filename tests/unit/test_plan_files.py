"""Issue 11 item 4: plan files are signed with the audit key when it is set, and in every mode a
plan whose descriptive fields disagree with a plan made now is refused, naming the field.

The attacker edits the file and recomputes its checksum with ``hashlib`` (the checksum is
unkeyed SHA-256: anyone can); signatures are checked against ``hmac`` computed here.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from typing import Any

import pytest

from offboard_audit.core.audit_chain import ChainKey
from offboard_audit.core.plan_file import PlanFileError, check_plan_file, plan_json, read_plan_json
from offboard_audit.core.planning import build_plan
from offboard_audit.core.policy import PolicyConfig
from tests.unit.test_planning import DEFS, NOW, finding

KEY = b"0123456789abcdef0123456789abcdef"


def rehashed(body: dict[str, Any]) -> dict[str, Any]:
    """What an attacker does after an edit: recompute the (unkeyed) checksum."""
    content = {k: v for k, v in body.items() if k != "checksum"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {**body, "checksum": "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()}


def the_plan():
    return build_plan([finding("alice", "K1"), finding("bob", "K2", who="e2")], DEFS, PolicyConfig(), NOW)


def file_of(key: ChainKey | None = None) -> dict[str, Any]:
    return json.loads(json.dumps(plan_json(the_plan(), key)))


def test_signed_plan_carries_an_hmac_with_the_audit_key_over_its_content() -> None:
    body = file_of(ChainKey(KEY))
    content = {k: v for k, v in body.items() if k not in ("checksum", "signature")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    expected = hmac.new(KEY, b"offboard-audit-plan/1\n" + canonical, hashlib.sha256).hexdigest()
    assert body["signature"] == {
        "alg": "hmac-sha256",
        "key_id": hmac.new(KEY, b"offboard-audit/key-id", hashlib.sha256).hexdigest()[:16],
        "value": expected,
    }
    assert read_plan_json(body, ChainKey(KEY)).signed
    assert "signature" not in file_of(None)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["actions"][0].update(description="harmless read-only check"),
            "signature does not match",
        ),
        (lambda d: d.pop("signature"), "not signed, but the audit key is set"),
        (lambda d: d["signature"].update(key_id="0" * 16), "signed with another key"),
    ],
)
def test_with_the_key_an_edited_and_rehashed_or_unsigned_plan_is_refused(edit, message: str) -> None:
    body = file_of(ChainKey(KEY))
    edit(body)
    with pytest.raises(PlanFileError, match=message):
        read_plan_json(rehashed(body), ChainKey(KEY))


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["actions"][0].update(description="harmless read-only check"), "actions[0].description"),
        (lambda d: d["actions"][1]["person"].update(name="Somebody Else"), "actions[1].person.name"),
        (lambda d: d["actions"][0].update(reversible=False), "actions[0].reversible"),
        (lambda d: d["actions"][0]["account"].update(name="carol"), "actions[0].account.name"),
        (lambda d: d["actions"][1].update(permissions=["nothing"]), "actions[1].permissions[0]"),
        (lambda d: d["held"].append({}) or None, None),  # a held entry the plan does not have: ignored
    ],
)
def test_in_every_mode_a_rehashed_plan_whose_description_disagrees_is_refused_naming_the_field(
    edit, field: str | None
) -> None:
    for key in (None, ChainKey(KEY)):
        body = file_of(key)
        edit(body)
        if key is not None:
            # Even with the key: a file re-signed by someone holding it is still checked.
            body["signature"] = {
                "alg": "hmac-sha256",
                "key_id": ChainKey(KEY).key_id,
                "value": hmac.new(
                    KEY,
                    b"offboard-audit-plan/1\n"
                    + json.dumps(
                        {k: v for k, v in body.items() if k not in ("checksum", "signature")},
                        sort_keys=True,
                        separators=(",", ":"),
                        ensure_ascii=False,
                    ).encode(),
                    hashlib.sha256,
                ).hexdigest(),
            }
        parsed = read_plan_json(rehashed(body), key)
        if field is None:
            check_plan_file(parsed, the_plan())
            continue
        with pytest.raises(PlanFileError) as caught:
            check_plan_file(parsed, the_plan())
        assert str(caught.value).startswith(f"{field} is ")


def test_an_edited_plan_id_is_refused_and_an_untouched_plan_passes() -> None:
    body = file_of()
    check_plan_file(read_plan_json(copy.deepcopy(body)), the_plan())
    body["plan_id"] = "p-0000000000000000"
    with pytest.raises(PlanFileError, match="plan_id does not match"):
        read_plan_json(rehashed(body))


def test_a_plan_made_from_other_findings_is_left_to_the_stale_check() -> None:
    body = file_of()
    body["actions"][0]["description"] = "edited"
    parsed = read_plan_json(rehashed(body))
    fresh = build_plan([finding("alice", "K1")], DEFS, PolicyConfig(), NOW)
    assert fresh.fingerprint != parsed.fingerprint
    check_plan_file(parsed, fresh)  # not compared: the engine refuses it as stale
