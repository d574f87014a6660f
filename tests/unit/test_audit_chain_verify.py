"""The audit chain's rules (``core/audit_chain.py``, ``core/chain_verify.py``), checked against answers computed here with
``hashlib``/``hmac`` directly: what an event's hash and MAC are, which event a broken chain
names and with which words, what the anchors prove, and what ``log verify`` says it proves.

Chains are built in memory (no database): each test says exactly what was done to it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from offboard_audit.core.audit_chain import (
    GENESIS,
    AuditEvent,
    ChainKey,
    canonical_payload,
    event_hash,
    recompute,
)
from offboard_audit.core.chain_verify import (
    Anchor,
    ChainProblem,
    VerifyResult,
    anchor_line,
    mode_name,
    parse_anchor,
    verify_chain,
    what_it_proves,
)

T = datetime(2026, 3, 1, tzinfo=UTC)
SECRET = b"k" * 32
OTHER_SECRET = b"o" * 32


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def expected_hash(prev: str, seq: int, at: datetime, kind: str, actor: str, run_id: str | None, action_id: str | None, payload_json: str) -> str:  # fmt: skip
    """The documented hash: SHA-256 of the compact JSON list of the previous hash and every field,
    the time in UTC with microseconds."""
    fields = [prev, seq, at.astimezone(UTC).isoformat(timespec="microseconds"), kind, actor, run_id, action_id, payload_json]  # fmt: skip
    return sha256_hex(json.dumps(fields, separators=(",", ":"), ensure_ascii=False))


def expected_mac(secret: bytes, event_hash_hex: str) -> str:
    return hmac.new(
        secret, b"offboard-audit-event/1\n" + event_hash_hex.encode("ascii"), hashlib.sha256
    ).hexdigest()


def expected_key_id(secret: bytes) -> str:
    return hmac.new(secret, b"offboard-audit/key-id", hashlib.sha256).hexdigest()[:16]


def chain(n: int, keyed_from: int | None = None, secret: bytes = SECRET) -> list[AuditEvent]:
    """``n`` well-formed events; from event ``keyed_from`` on each carries its MAC."""
    out: list[AuditEvent] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        at = T + timedelta(seconds=seq)
        payload = json.dumps({"n": seq}, separators=(",", ":"))
        h = expected_hash(prev, seq, at, "test", "tester", None, f"a{seq}", payload)
        keyed = keyed_from is not None and seq >= keyed_from
        mac = expected_mac(secret, h) if keyed else None
        key_id = expected_key_id(secret) if keyed else None
        out.append(AuditEvent(seq, at, "test", "tester", None, f"a{seq}", payload, prev, h, mac, key_id))
        prev = h
    return out


def problems(events: list[AuditEvent], **kwargs: object) -> list[str]:
    return [str(p) for p in verify_chain(events, **kwargs).problems]  # type: ignore[arg-type]


# --- hashes, MACs and the key --------------------------------------------------------------------


def test_an_events_hash_is_sha256_over_the_documented_json_list() -> None:
    at = datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    content = (
        '["'
        + GENESIS
        + '",1,"2026-03-01T12:30:00.000000+00:00","intent","cli:alice","r-1","a-1","{\\"n\\":1}"]'
    )
    want = hashlib.sha256(content.encode("utf-8")).hexdigest()
    assert event_hash(GENESIS, 1, at, "intent", "cli:alice", "r-1", "a-1", '{"n":1}') == want


def test_every_field_of_an_event_changes_its_hash() -> None:
    base = (GENESIS, 1, T, "intent", "cli:alice", "r-1", "a-1", "{}")
    h = event_hash(*base)
    variants = [
        ("1" * 64, *base[1:]),
        (base[0], 2, *base[2:]),
        (*base[:2], T + timedelta(microseconds=1), *base[3:]),
        (*base[:3], "outcome", *base[4:]),
        (*base[:4], "daemon", *base[5:]),
        (*base[:5], None, *base[6:]),
        (*base[:6], None, base[7]),
        (*base[:7], '{"x":1}'),
    ]
    assert all(event_hash(*v) != h for v in variants)  # type: ignore[arg-type]


def test_the_same_instant_in_another_offset_hashes_the_same() -> None:
    local = T.astimezone(timezone(timedelta(hours=-5)))
    assert event_hash(GENESIS, 1, local, "k", "a", None, None, "{}") == event_hash(
        GENESIS, 1, T, "k", "a", None, None, "{}"
    )


def test_a_naive_time_cannot_be_hashed() -> None:
    with pytest.raises(ValueError):
        event_hash(GENESIS, 1, datetime(2026, 3, 1), "k", "a", None, None, "{}")


def test_recompute_hashes_the_stored_fields_of_an_event() -> None:
    (ev,) = chain(1)
    assert (
        recompute(ev) == ev.hash == expected_hash(GENESIS, 1, ev.at, "test", "tester", None, "a1", '{"n":1}')
    )


def test_payloads_are_stored_as_compact_json_with_sorted_keys_and_text_as_it_is() -> None:
    when = datetime(2026, 3, 1, tzinfo=UTC)
    assert canonical_payload({"b": 1, "a": ["é", None], "at": when}) == (
        '{"a":["é",null],"at":"2026-03-01 00:00:00+00:00","b":1}'
    )


def test_an_event_payload_reads_back_as_an_object_and_anything_else_as_its_value() -> None:
    (ev,) = chain(1)
    assert ev.payload == {"n": 1}
    assert replace(ev, payload_json="[1,2]").payload == {"value": [1, 2]}
    assert not ev.keyed and replace(ev, mac="00").keyed


def test_the_key_id_the_event_mac_and_a_signature_are_hmac_sha256_with_their_own_labels() -> None:
    key = ChainKey(SECRET)
    h = "ab" * 32
    assert key.key_id == expected_key_id(SECRET) and len(key.key_id) == 16
    assert key.event_mac(h) == expected_mac(SECRET, h)
    assert key.sign(b"offboard-audit-plan/1", b"{}") == hmac.new(SECRET, b"offboard-audit-plan/1\n{}", hashlib.sha256).hexdigest()  # fmt: skip


def test_the_key_must_be_at_least_32_bytes_and_is_never_printed() -> None:
    ChainKey(b"x" * 32)
    with pytest.raises(ValueError, match=r"^the audit key must be at least 32 bytes long$"):
        ChainKey(b"x" * 31)
    assert "kkkk" not in repr(ChainKey(SECRET))


# --- verifying the chain ---------------------------------------------------------------------------


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    events = chain(4)
    assert verify_chain(events) == VerifyResult(
        events=4,
        head_seq=4,
        head_hash=events[-1].hash,
        problems=(),
        keyed=0,
        first_keyed=None,
        last_keyed=None,
        macs_checked=False,
        anchors_checked=0,
        anchored_seq=None,
    )
    assert verify_chain(events).ok


def test_an_empty_log_verifies_with_no_head() -> None:
    result = verify_chain([])
    assert (result.events, result.head_seq, result.head_hash, result.ok) == (0, None, GENESIS, True)


def test_an_edited_payload_is_named_by_its_event() -> None:
    events = chain(4)
    events[2] = replace(events[2], payload_json='{"n":99}')
    assert problems(events) == ["event 3: content edited: its hash does not match its content"]
    assert not verify_chain(events).ok


def test_an_event_re_hashed_after_an_edit_breaks_the_next_link() -> None:
    events = chain(4)
    forged = replace(events[1], payload_json='{"n":42}')
    events[1] = replace(forged, hash=recompute(forged))
    assert problems(events) == [
        "event 3: link broken: prev_hash does not match the hash of the event before it "
        "(an event before it was edited, deleted or moved)"
    ]


def test_one_deleted_event_is_named_by_the_event_after_it() -> None:
    events = chain(5)
    del events[2]
    assert problems(events) == [
        "event 4: event(s) 3 missing before it (deleted)",
        "event 4: link broken: prev_hash does not match the hash of the event before it "
        "(an event before it was edited, deleted or moved)",
    ]


def test_several_deleted_events_are_named_as_a_range() -> None:
    events = chain(6)
    del events[1:4]
    assert problems(events)[0] == "event 5: event(s) 2 to 4 missing before it (deleted)"


def test_a_deleted_first_event_is_a_gap_after_the_genesis() -> None:
    events = chain(3)[1:]
    assert problems(events)[0] == "event 2: event(s) 1 missing before it (deleted)"


def test_events_out_of_order_are_named() -> None:
    events = chain(4)
    events[1], events[2] = events[2], events[1]
    found = problems(events)
    assert found[0] == "event 3: event(s) 2 missing before it (deleted)"
    assert "event 2: out of order (comes after event 3)" in found
    # The sequence continues after the highest number seen: event 4 is not another gap.
    assert not any(p.startswith("event 4: event(s)") for p in found)


def test_a_repeated_sequence_number_is_out_of_order() -> None:
    events = chain(3)
    events.insert(2, events[1])
    assert "event 2: out of order (comes after event 2)" in problems(events)


def test_a_remembered_head_must_be_in_the_chain() -> None:
    events = chain(5)
    head = events[-1].hash
    assert problems(events, expected_head=head) == []
    assert problems(events, expected_head=events[2].hash) == []
    cut = events[:4]
    assert problems(cut, expected_head=head) == [
        f"event 4: expected head {head[:16]}... not found: events were cut off or replaced"
    ]
    assert problems([], expected_head=head) == [
        f"event 0: expected head {head[:16]}... not found: events were cut off or replaced"
    ]


def test_a_remembered_head_is_hex_in_any_case_and_pasted_with_spaces() -> None:
    events = chain(5)
    head = events[-1].hash
    assert head == head.lower()  # what verify prints
    assert problems(events, expected_head=head.upper()) == []
    assert problems(events, expected_head=f"  {head.upper()}\n") == []
    assert problems(events[:4], expected_head=head.upper()) == [
        f"event 4: expected head {head[:16]}... not found: events were cut off or replaced"
    ]


def test_a_blank_remembered_head_is_a_head_not_found_never_no_head_at_all() -> None:
    # `log verify --head "$HEAD"` with HEAD unset or empty must fail, not verify as if no head
    # had been given.
    events = chain(5)
    for blank in ("", "  \n"):
        assert problems(events, expected_head=blank) == [
            "event 5: expected head ... not found: events were cut off or replaced"
        ]


# --- the keyed chain ----------------------------------------------------------------------------


def test_a_keyed_chain_verifies_with_its_key_and_counts_its_keyed_events() -> None:
    result = verify_chain(chain(5, keyed_from=3), key=ChainKey(SECRET))
    assert result.ok
    assert (result.keyed, result.first_keyed, result.last_keyed, result.macs_checked) == (3, 3, 5, True)


def test_without_the_key_macs_are_counted_but_not_checked() -> None:
    events = chain(3, keyed_from=1)
    events[1] = replace(events[1], mac="0" * 64)
    result = verify_chain(events)
    assert result.ok and not result.macs_checked and result.keyed == 3


def test_a_mac_that_does_not_match_is_named() -> None:
    events = chain(3, keyed_from=1)
    events[1] = replace(events[1], mac=expected_mac(OTHER_SECRET, events[1].hash))
    assert problems(events, key=ChainKey(SECRET)) == [
        "event 2: MAC does not match: the event (or one before it) was rewritten by someone without the audit key"
    ]


def test_a_mac_made_with_another_key_is_named_with_both_key_ids() -> None:
    events = chain(2, keyed_from=1, secret=OTHER_SECRET)
    mine, theirs = expected_key_id(SECRET), expected_key_id(OTHER_SECRET)
    assert problems(events, key=ChainKey(SECRET)) == [
        f"event 1: MAC made with another key (key id {theirs}, the configured key is {mine}): it cannot be checked",
        f"event 2: MAC made with another key (key id {theirs}, the configured key is {mine}): it cannot be checked",
    ]


def test_a_stripped_mac_after_a_keyed_event_is_named_once_with_how_many_more_lack_it() -> None:
    events = chain(5, keyed_from=2)
    one = [*events[:2], replace(events[2], mac=None, key_id=None), *events[3:]]
    assert problems(one) == [
        "event 3: no MAC although event 2 before it has one: written without the audit key, or its MAC removed"
    ]
    three = [*events[:2], *(replace(e, mac=None, key_id=None) for e in events[2:])]
    assert problems(three, key=ChainKey(SECRET)) == [
        "event 3: no MAC although event 2 before it has one: written without the audit key, or its MAC "
        "removed; 2 later event(s) lack it too"
    ]


def test_with_the_key_set_a_chain_without_any_mac_is_a_problem_at_its_head() -> None:
    assert problems(chain(3), key=ChainKey(SECRET)) == [
        "event 3: no event carries a MAC although the audit key is set: the chain (or its keyed part) was "
        "replaced or cut off by someone without the key, or nothing was written since the key was set "
        "(then the next event starts the keyed part)"
    ]
    assert problems([], key=ChainKey(SECRET)) == []


# --- anchors -------------------------------------------------------------------------------------


def anchor(events: list[AuditEvent], seq: int, line: int, count: int | None = None, hash_: str | None = None) -> Anchor:  # fmt: skip
    ev = next(e for e in events if e.seq == seq)
    return Anchor(T + timedelta(hours=line), seq, hash_ or ev.hash, seq if count is None else count, line)


def test_an_anchor_line_is_compact_json_in_utc() -> None:
    a = Anchor(datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), 5, "ab" * 32, 5)
    assert anchor_line(a) == (
        '{"at":"2026-03-01T12:00:00+00:00","head_seq":5,"head_hash":"' + "ab" * 32 + '","count":5}'
    )


def test_an_anchor_line_reads_back_with_its_line_number() -> None:
    a = Anchor(T, 5, "ab" * 32, 5)
    assert parse_anchor(anchor_line(a), 7) == Anchor(T, 5, "ab" * 32, 5, 7)
    first = '{"at":"2026-03-01T00:00:00+00:00","head_seq":1,"head_hash":"' + "0" * 64 + '","count":0}'
    assert parse_anchor(first, 1) == Anchor(T, 1, "0" * 64, 0, 1)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"head_seq": 0}, "head_seq must be a positive integer"),
        ({"head_seq": True}, "head_seq must be a positive integer"),
        ({"head_seq": "5"}, "head_seq must be a positive integer"),
        ({"head_hash": "a" * 63}, "head_hash must be 64 hex characters"),
        ({"head_hash": "a" * 65}, "head_hash must be 64 hex characters"),
        ({"head_hash": None}, "head_hash must be 64 hex characters"),
        ({"head_hash": "g" * 64}, "head_hash must be 64 hex characters"),
        ({"head_hash": "a" * 62 + "0x"}, "head_hash must be 64 hex characters"),
        ({"head_hash": "a" * 31 + " " + "a" * 32}, "head_hash must be 64 hex characters"),
        ({"count": -1}, "count must be a non-negative integer"),
        ({"count": False}, "count must be a non-negative integer"),
        ({"count": 1.0}, "count must be a non-negative integer"),
        ({"at": 1772323200}, "at must be an ISO 8601 time"),
        ({"at": "2026-03-01T00:00:00"}, "at must carry a UTC offset"),
    ],
)
def test_a_bad_anchor_line_says_what_is_wrong(changes: dict[str, object], why: str) -> None:
    good = {"at": "2026-03-01T00:00:00+00:00", "head_seq": 5, "head_hash": "a" * 64, "count": 5}
    with pytest.raises(ValueError, match=f"^{re.escape(why)}$"):
        parse_anchor(json.dumps({**good, **changes}), 1)


def test_an_anchor_hash_copied_in_upper_case_is_the_same_anchor() -> None:
    events = chain(3)
    line = json.dumps(
        {"at": T.isoformat(), "head_seq": 3, "head_hash": f" {events[2].hash.upper()} ", "count": 3}
    )
    parsed = parse_anchor(line, 1)
    assert parsed.hash == events[2].hash
    result = verify_chain(events, anchors=[parsed])
    assert result.ok and result.anchored_seq == 3


def test_an_anchor_line_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^not a JSON object$"):
        parse_anchor("[1, 2]", 1)


def test_agreeing_anchors_confirm_the_chain_up_to_the_newest() -> None:
    events = chain(6)
    result = verify_chain(events, anchors=[anchor(events, 2, 1), anchor(events, 5, 2)])
    assert result.ok and (result.anchors_checked, result.anchored_seq) == (2, 5)


def test_an_anchor_whose_hash_disagrees_names_the_event_and_where_the_change_lies() -> None:
    events = chain(6)
    bad_hash = "f" * 64
    anchors = [anchor(events, 2, 1), anchor(events, 5, 2, hash_=bad_hash)]
    result = verify_chain(events, anchors=anchors)
    assert [str(p) for p in result.problems] == [
        f"event 5: first event that disagrees with the anchors: anchor line 2 (written {anchors[1].at.isoformat()}): "
        f"the database has hash {events[4].hash[:16]}..., the anchor {'f' * 16}...; events up to 2 agree with "
        "anchor line 1, so the change lies in events 3-5"
    ]
    assert (result.anchors_checked, result.anchored_seq) == (2, 2)


def test_an_anchor_whose_count_disagrees_says_both_counts() -> None:
    events = chain(4)
    anchors = [anchor(events, 3, 4, count=4)]
    assert problems(events, anchors=anchors) == [
        f"event 3: first event that disagrees with the anchors: anchor line 4 (written {anchors[0].at.isoformat()}): "
        "3 events up to it in the database, 4 when anchored; no earlier anchor agrees, so the change lies in events 1-3"
    ]


def test_a_disagreement_right_after_an_agreeing_anchor_names_one_event() -> None:
    events = chain(4)
    anchors = [anchor(events, 2, 1), anchor(events, 3, 2, count=9)]
    assert problems(events, anchors=anchors)[0].endswith(
        "events up to 2 agree with anchor line 1, so the change lies in event 3"
    )


def test_an_anchor_on_the_first_event_that_disagrees_names_event_1() -> None:
    events = chain(2)
    anchors = [anchor(events, 1, 1, count=2)]
    assert problems(events, anchors=anchors)[0].endswith(
        "no earlier anchor agrees, so the change lies in event 1"
    )


def test_an_anchor_beyond_the_head_means_the_tail_was_cut_off() -> None:
    events = chain(5)
    anchors = [anchor(events, 3, 1), anchor(events, 5, 2)]
    cut = events[:4]
    result = verify_chain(cut, anchors=anchors)
    assert [str(p) for p in result.problems] == [
        f"event 5: first event that disagrees with the anchors: anchor line 2 (written {anchors[1].at.isoformat()}): "
        "the database ends at event 4: events after it were cut off; events up to 3 agree with anchor line 1, "
        "so the change lies in events 4-5"
    ]
    assert (result.anchors_checked, result.anchored_seq) == (2, 3)


def test_an_anchor_on_an_empty_log_says_it_ends_at_event_0() -> None:
    events = chain(2)
    assert (
        "the database ends at event 0: events after it were cut off"
        in problems([], anchors=[anchor(events, 2, 1)])[0]
    )


def test_an_anchor_on_a_deleted_event_says_so_and_later_disagreements_are_counted() -> None:
    events = chain(6)
    anchors = [anchor(events, 3, 1), anchor(events, 4, 2), anchor(events, 6, 3)]
    del events[2]
    found = problems(events, anchors=anchors)
    assert found[-1] == (
        f"event 3: first event that disagrees with the anchors: anchor line 1 (written {anchors[0].at.isoformat()}): "
        "the database has no event with that number (deleted); no earlier anchor agrees, so the change lies in "
        "events 1-3; 2 later anchor(s) disagree too"
    )
    assert verify_chain(events, anchors=anchors).anchored_seq is None


def test_a_good_anchor_after_the_first_bad_one_confirms_nothing() -> None:
    events = chain(5)
    anchors = [anchor(events, 2, 1, count=7), anchor(events, 4, 2)]
    result = verify_chain(events, anchors=anchors)
    assert result.anchored_seq is None and len(result.problems) == 1


def test_two_anchors_of_the_same_event_are_both_checked() -> None:
    events = chain(3)
    anchors = [anchor(events, 3, 1), anchor(events, 3, 2, count=2)]
    result = verify_chain(events, anchors=anchors)
    assert result.anchors_checked == 2
    assert "anchor line 2" in str(result.problems[0]) and "no earlier anchor agrees" in str(
        result.problems[0]
    )


def test_a_chain_problem_reads_event_then_problem() -> None:
    assert str(ChainProblem(4, "gone")) == "event 4: gone"


# --- what a verification proves -------------------------------------------------------------------


def test_mode_names() -> None:
    assert [mode_name(k, a) for k in (False, True) for a in (False, True)] == [
        "unkeyed",
        "unkeyed+anchored",
        "keyed",
        "keyed+anchored",
    ]


def test_an_empty_log_proves_nothing_but_that() -> None:
    assert what_it_proves(verify_chain([]), anchored=True) == ["the audit log is empty"]


def test_an_unkeyed_log_without_anchors_says_it_can_be_rewritten_and_cut() -> None:
    assert what_it_proves(verify_chain(chain(3)), anchored=False) == [
        "events 1-3: unkeyed hash chain. The events are consistent with each other; anyone who can write to the "
        "database could rewrite and re-hash them undetected",
        "no anchors: events cut off the end of the log cannot be detected (keep the printed head, or set "
        "[audit] anchor_file)",
    ]


def test_an_unkeyed_anchored_log_says_what_the_anchors_cover() -> None:
    events = chain(4)
    result = verify_chain(events, anchors=[anchor(events, 3, 1)])
    assert what_it_proves(result, anchored=True) == [
        "events 1-4: unkeyed hash chain. The events are consistent with each other; anyone who can write to the "
        "database could rewrite and re-hash them undetected (the anchors below are what rules that out)",
        "events 1-3: agree with 1 anchor(s) written outside the database; events after 3 are covered by no anchor yet",
    ]


def test_an_anchored_log_that_no_anchor_confirms_says_so() -> None:
    assert what_it_proves(verify_chain(chain(1)), anchored=True)[-1] == "no anchor confirms any event yet"


def test_a_log_keyed_from_its_third_event_says_what_the_mac_covers_and_since_when() -> None:
    result = verify_chain(chain(5, keyed_from=3), key=ChainKey(SECRET))
    assert what_it_proves(result, anchored=False)[:2] == [
        "events 1-2: written before the audit key was set (unkeyed); event 3's MAC covers them from the moment it "
        "was written, not before",
        "events 3-5: keyed; their MACs were checked with the audit key, so neither they nor any event before them "
        "can have been rewritten by someone without the key",
    ]


def test_a_log_keyed_from_the_start_has_no_unkeyed_part_and_one_event_is_named_alone() -> None:
    proves = what_it_proves(verify_chain(chain(1, keyed_from=1), key=ChainKey(SECRET)), anchored=False)
    assert proves[0].startswith("event 1: keyed; their MACs were checked")
    assert len(proves) == 2


def test_a_keyed_log_verified_without_the_key_says_the_macs_were_not_checked() -> None:
    result = verify_chain(chain(2, keyed_from=1))
    assert what_it_proves(result, anchored=False)[0] == (
        "events 1-2: keyed, but no audit key was given: their MACs were NOT checked, only the plain hash chain"
    )
