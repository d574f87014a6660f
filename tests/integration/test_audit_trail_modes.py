"""Issue 11 item 3: the keyed chain ([audit] key_env) and the anchors ([audit] anchor_file).

The attacker here can write to the database (plain SQL) but has neither the audit key nor the
anchor file. MACs are checked against ``hmac`` computed in the test; anchors against the rows
read with ``sqlite3``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from offboard_audit.core.audit_chain import ChainKey, event_hash
from offboard_audit.core.chain_verify import verify_chain
from offboard_audit.report.audit_trail import AuditTrail, attach, check_trail, write_anchor
from offboard_audit.storage.actions import NewEvent, append_event, iter_events
from offboard_audit.storage.store import Store
from tests.support.fake_connector import FakeWorld, cli, standard_world

KEY = b"k" * 16 + b"0123456789abcdef"  # 32 bytes
OTHER_KEY = b"x" * 32
T = datetime(2026, 3, 1, tzinfo=UTC)


def expected_mac(key: bytes, event_hash_hex: str) -> str:
    return hmac.new(key, b"offboard-audit-event/1\n" + event_hash_hex.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[Store, Path]]:
    path = tmp_path / "log.db"
    store = Store.open(f"sqlite:///{path}")
    yield store, path
    store.engine.dispose()


def append(store: Store, n: int, start: int = 1) -> None:
    for i in range(start, start + n):
        append_event(store, NewEvent("test", T + timedelta(seconds=i), "tester", {"n": i}))


def rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT seq, at, kind, actor, run_id, action_id, payload_json, prev_hash, hash, mac, key_id"
            " FROM audit_events ORDER BY seq"
        ).fetchall()


def rewrite_without_the_first(path: Path, drop: int) -> None:
    """The attack of the issue: delete the first events, renumber and re-hash the rest (with the
    tool's own hash function, which anyone can run), leaving any MACs as they were."""
    kept = rows(path)[drop:]
    events = list(iter_events(Store.open(f"sqlite:///{path}", upgrade=False)))[drop:]
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM audit_events")
        prev = "0" * 64
        for new_seq, (ev, row) in enumerate(zip(events, kept, strict=True), start=1):
            h = event_hash(prev, new_seq, ev.at, ev.kind, ev.actor, ev.run_id, ev.action_id, ev.payload_json)
            conn.execute(
                "INSERT INTO audit_events (seq, at, kind, actor, run_id, action_id, payload_json, prev_hash,"
                " hash, mac, key_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    new_seq,
                    row[1],
                    ev.kind,
                    ev.actor,
                    ev.run_id,
                    ev.action_id,
                    ev.payload_json,
                    prev,
                    h,
                    row[9],
                    row[10],
                ),
            )
            prev = h


def problems(store: Store, trail: AuditTrail) -> list[str]:
    return check_trail(store, trail).problems


def test_keyed_events_carry_an_hmac_of_their_hash_made_with_the_audit_key(db: tuple[Store, Path]) -> None:
    store, path = db
    attach(store, AuditTrail(ChainKey(KEY)))
    append(store, 3)
    key_id = hmac.new(KEY, b"offboard-audit/key-id", hashlib.sha256).hexdigest()[:16]
    for seq, *_rest, h, mac, stored_key_id in rows(path):
        assert mac == expected_mac(KEY, h), seq
        assert stored_key_id == key_id
    assert problems(store, AuditTrail(ChainKey(KEY))) == []
    assert "k" * 16 not in repr(ChainKey(KEY)) and "k" * 16 not in repr(AuditTrail(ChainKey(KEY)))


def test_deleting_the_first_events_and_rehashing_passes_unkeyed_but_not_keyed(tmp_path: Path) -> None:
    unkeyed = Store.open(f"sqlite:///{tmp_path / 'plain.db'}")
    append(unkeyed, 5)
    rewrite_without_the_first(tmp_path / "plain.db", 2)
    # What the issue reports: a plain chain re-hashed after the deletion verifies.
    assert verify_chain(iter_events(unkeyed)).ok

    keyed = Store.open(f"sqlite:///{tmp_path / 'keyed.db'}")
    attach(keyed, AuditTrail(ChainKey(KEY)))
    append(keyed, 5)
    rewrite_without_the_first(tmp_path / "keyed.db", 2)
    found = problems(keyed, AuditTrail(ChainKey(KEY)))
    assert found[0] == (
        "event 1: MAC does not match: the event (or one before it) was rewritten by someone without the audit key"
    )
    assert len(found) == 3  # every re-hashed event


def test_stripping_the_macs_is_not_a_way_around_the_key(db: tuple[Store, Path]) -> None:
    store, path = db
    attach(store, AuditTrail(ChainKey(KEY)))
    append(store, 4)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE audit_events SET mac = NULL, key_id = NULL WHERE seq >= 3")
    assert problems(store, AuditTrail(ChainKey(KEY))) == [
        "event 3: no MAC although event 1 before it has one: written without the audit key, or its MAC "
        "removed; 1 later event(s) lack it too"
    ]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE audit_events SET mac = NULL, key_id = NULL")
    assert problems(store, AuditTrail(ChainKey(KEY)))[0].startswith(
        "event 4: no event carries a MAC although the audit key is set"
    )


def test_a_key_set_later_keys_the_events_from_then_on_and_verify_says_what_each_part_proves(
    db: tuple[Store, Path],
) -> None:
    store, path = db
    append(store, 3)  # before the key was set
    attach(store, AuditTrail(ChainKey(KEY)))
    append(store, 3, start=4)
    macs = [r[9] for r in rows(path)]
    assert macs[:3] == [None, None, None] and all(macs[3:])

    check = check_trail(store, AuditTrail(ChainKey(KEY)))
    assert check.ok and check.result.first_keyed == 4 and check.result.keyed == 3
    assert check.proves[:2] == [
        "events 1-3: written before the audit key was set (unkeyed); event 4's MAC covers them from the "
        "moment it was written, not before",
        "events 4-6: keyed; their MACs were checked with the audit key, so neither they nor any event "
        "before them can have been rewritten by someone without the key",
    ]
    # Without the key nothing can be said about the MACs, and verify says so.
    plain = check_trail(store, AuditTrail())
    assert plain.ok and not plain.result.macs_checked
    assert any("MACs were not checked" in n for n in plain.notes)
    # Rewriting an unkeyed event and re-hashing from there is caught by event 4's MAC.
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE audit_events SET payload_json = '{\"n\":99}' WHERE seq = 2")
    rewrite_without_the_first(path, 0)
    assert problems(store, AuditTrail(ChainKey(KEY)))[0].startswith("event 4: MAC does not match")
    # Another key cannot vouch for them either.
    assert "MAC made with another key" in problems(store, AuditTrail(ChainKey(OTHER_KEY)))[0]


def test_anchor_file_gets_the_head_this_process_appended_and_is_only_ever_appended_to(
    db: tuple[Store, Path], tmp_path: Path
) -> None:
    store, path = db
    anchors = tmp_path / "anchors.jsonl"
    trail = AuditTrail(None, anchors)
    attach(store, trail)
    assert write_anchor(store, trail, T) is None and not anchors.exists()  # nothing appended yet
    append(store, 3)
    write_anchor(store, trail, T + timedelta(minutes=1))
    assert stat.S_IMODE(anchors.stat().st_mode) == 0o600
    append(store, 2, start=4)
    write_anchor(store, trail, T + timedelta(minutes=2))
    assert write_anchor(store, trail, T + timedelta(minutes=3)) is None  # nothing new since
    lines = [json.loads(x) for x in anchors.read_text().splitlines()]
    table = rows(path)
    assert [(x["head_seq"], x["head_hash"], x["count"]) for x in lines] == [
        (3, table[2][8], 3),
        (5, table[4][8], 5),
    ]
    assert lines[0]["at"] == (T + timedelta(minutes=1)).isoformat()
    assert check_trail(store, trail).ok and check_trail(store, trail).result.anchored_seq == 5


def test_anchors_catch_a_cut_off_tail_and_name_the_first_event_that_disagrees(
    db: tuple[Store, Path], tmp_path: Path
) -> None:
    store, path = db
    trail = AuditTrail(None, tmp_path / "anchors.jsonl")
    attach(store, trail)
    for start in (1, 3, 5):
        append(store, 2, start=start)
        write_anchor(store, trail, T)
    assert check_trail(store, trail).ok

    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM audit_events WHERE seq = 6")
    assert verify_chain(iter_events(store)).ok  # the chain alone cannot see it
    assert problems(store, trail) == [
        "event 6: first event that disagrees with the anchors: anchor line 3 (written "
        f"{T.isoformat()}): the database ends at event 5: events after it were cut off; events up to 4 "
        "agree with anchor line 2, so the change lies in events 5-6"
    ]

    rewrite_without_the_first(path, 1)  # the attack, on top
    found = problems(store, trail)
    assert found[0].startswith("event 2: first event that disagrees with the anchors: anchor line 1")
    assert found[0].endswith(
        "no earlier anchor agrees, so the change lies in events 1-2; 2 later anchor(s) disagree too"
    )


def test_an_unreadable_anchor_line_is_a_problem(db: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = db
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text('{"head_seq": "x"}\n')
    assert problems(store, AuditTrail(None, anchors)) == [
        f"anchor file {anchors} line 1 is not an anchor: head_seq must be a positive integer"
    ]


def test_an_anchor_line_whose_head_is_not_hex_is_unreadable_not_compared(
    db: tuple[Store, Path], tmp_path: Path
) -> None:
    store, _ = db
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text(
        json.dumps({"at": T.isoformat(), "head_seq": 1, "head_hash": "z" * 64, "count": 1}) + "\n"
    )
    assert problems(store, AuditTrail(None, anchors)) == [
        f"anchor file {anchors} line 1 is not an anchor: head_hash must be 64 hex characters"
    ]


# --- through the CLI --------------------------------------------------------------------------------


def keyed_world(tmp_path: Path) -> FakeWorld:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    text = world.config_path.read_text()
    world.config_path.write_text(
        text
        + f'\n[audit]\nkey_env = "OFFBOARD_TEST_AUDIT_KEY"\nanchor_file = "{tmp_path / "anchors.jsonl"}"\n'
    )
    return world


def test_cli_keys_and_anchors_every_pass_and_verify_and_the_evidence_pack_say_so(tmp_path: Path) -> None:
    world = keyed_world(tmp_path)
    key_env = {"OFFBOARD_TEST_AUDIT_KEY": KEY.decode()}
    assert cli(world, "audit", env=key_env)[0] == 1
    code, _, err = cli(world, "revoke", "--apply", "--person", "E2", env=key_env)
    assert code == 0, err
    db = tmp_path / "db.sqlite"
    table = rows(db)
    assert table and all(r[9] == expected_mac(KEY, r[8]) for r in table)
    (anchor,) = [json.loads(x) for x in (tmp_path / "anchors.jsonl").read_text().splitlines()]
    assert (anchor["head_seq"], anchor["head_hash"], anchor["count"]) == (
        len(table),
        table[-1][8],
        len(table),
    )

    code, out, err = cli(world, "log", "verify", env=key_env)
    assert code == 0 and out.startswith("ok:") and "mode: keyed+anchored" in err, err
    code, out, _ = cli(world, "report", "--person", "E2", env=key_env)
    log = json.loads(out)["audit_log"]
    assert log["mode"] == "keyed+anchored" and log["keyed"] and log["anchored"] and log["macs_checked"]
    assert log["anchors_checked"] == 1 and log["anchored_up_to"] == len(table)

    # An edited actions row is reported by log verify (item 1) ...
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE actions SET actor = 'cli:mallory'")
    code, out, err = cli(world, "log", "verify", env=key_env)
    assert code == 1 and out.startswith("BROKEN:") and "actor is 'cli:mallory' in the actions table" in err
    # ... and the key must be there: no silent fallback to unkeyed events.
    code, _, err = cli(world, "log", "verify")
    assert code == 2 and "OFFBOARD_TEST_AUDIT_KEY is not set" in err
    code, _, err = cli(world, "log", "verify", env={"OFFBOARD_TEST_AUDIT_KEY": "short"})
    assert code == 2 and "at least 32 bytes" in err and "short" not in err.replace("OFFBOARD", "")


def test_cli_log_anchor_anchors_a_log_written_before_anchoring_was_set_up(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    cli(world, "audit")
    assert cli(world, "revoke", "--apply", "--person", "E2")[0] == 0
    anchors = tmp_path / "anchors.jsonl"
    world.config_path.write_text(world.config_path.read_text() + f'\n[audit]\nanchor_file = "{anchors}"\n')
    code, out, err = cli(world, "log", "anchor")
    assert code == 0, err
    head = rows(tmp_path / "db.sqlite")[-1]
    assert out.startswith(f"anchored: head {head[0]} {head[8]}")
    assert json.loads(anchors.read_text())["head_hash"] == head[8]
    assert os.stat(anchors).st_mode & 0o077 == 0


def test_cli_log_anchor_start_keyed_starts_the_keyed_part_of_a_log_written_without_the_key(
    tmp_path: Path,
) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    cli(world, "audit")
    assert cli(world, "revoke", "--apply", "--person", "E2")[0] == 0  # events without a MAC
    before = rows(tmp_path / "db.sqlite")
    assert before and all(r[9] is None for r in before)
    world.config_path.write_text(
        world.config_path.read_text()
        + f'\n[audit]\nkey_env = "OFFBOARD_TEST_AUDIT_KEY"\nanchor_file = "{tmp_path / "anchors.jsonl"}"\n'
    )
    key_env = {"OFFBOARD_TEST_AUDIT_KEY": KEY.decode()}
    # The key newly set: no event carries a MAC, which verify cannot tell from stripped MACs.
    assert cli(world, "log", "verify", env=key_env)[0] == 1
    assert cli(world, "log", "anchor", env=key_env)[0] == 1

    code, out, err = cli(world, "log", "anchor", "--start-keyed", env=key_env)
    assert code == 0, err
    after = rows(tmp_path / "db.sqlite")
    assert after[: len(before)] == before and len(after) == len(before) + 1
    seq, _at, kind, *_rest, h, mac, _key_id = after[-1]
    assert (kind, mac) == ("audit-key-set", expected_mac(KEY, h))
    assert f"appended event {seq} (audit-key-set)" in err and out.startswith(f"anchored: head {seq} {h}")
    code, out, err = cli(world, "log", "verify", env=key_env)
    assert code == 0 and out.startswith("ok:"), err

    # Once any event carries a MAC it is refused: it must never vouch for a stripped chain.
    code, _out, err = cli(world, "log", "anchor", "--start-keyed", env=key_env)
    assert code == 2 and f"event {seq} already carries a MAC" in err
    assert rows(tmp_path / "db.sqlite") == after


def test_cli_log_anchor_start_keyed_needs_the_audit_key(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    cli(world, "audit")
    world.config_path.write_text(
        world.config_path.read_text() + f'\n[audit]\nanchor_file = "{tmp_path / "anchors.jsonl"}"\n'
    )
    before = rows(tmp_path / "db.sqlite")
    code, _out, err = cli(world, "log", "anchor", "--start-keyed")
    assert code == 2 and "--start-keyed needs the audit key" in err
    assert rows(tmp_path / "db.sqlite") == before and not (tmp_path / "anchors.jsonl").exists()


def test_cli_log_verify_head_is_hex_in_any_case_and_trimmed(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    cli(world, "audit")
    assert cli(world, "revoke", "--apply", "--person", "E2")[0] == 0
    head = rows(tmp_path / "db.sqlite")[-1][8]
    code, out, err = cli(world, "log", "verify", "--head", f" {head.upper()}\n")
    assert code == 0 and out.startswith("ok:") and out.split()[-1] == head, err
    # The same head still exposes a cut-off tail.
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        conn.execute("DELETE FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)")
    code, out, err = cli(world, "log", "verify", "--head", head.upper())
    assert code == 1 and f"expected head {head[:16]}... not found: events were cut off" in err


def started_keyed_world(tmp_path: Path) -> tuple[FakeWorld, dict[str, str], Path]:
    """A log written without the key, keyed and anchored by `log anchor --start-keyed`, then
    more events (each pass anchors its own)."""
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    cli(world, "audit")
    assert cli(world, "revoke", "--apply", "--person", "E2")[0] == 0
    anchors = tmp_path / "anchors.jsonl"
    world.config_path.write_text(
        world.config_path.read_text()
        + f'\n[audit]\nkey_env = "OFFBOARD_TEST_AUDIT_KEY"\nanchor_file = "{anchors}"\n'
    )
    key_env = {"OFFBOARD_TEST_AUDIT_KEY": KEY.decode()}
    code, _, err = cli(world, "log", "anchor", "--start-keyed", env=key_env)
    assert code == 0, err
    assert cli(world, "revoke", "--apply", "--person", "E1", env=key_env)[0] == 0
    code, out, err = cli(world, "log", "verify", env=key_env)
    assert code == 0 and out.startswith("ok:") and "warning:" not in err, err
    return world, key_env, anchors


@pytest.mark.parametrize("remove", ["delete", "empty"])
def test_cli_log_verify_with_the_anchors_gone_after_log_anchor_ran_is_broken(
    tmp_path: Path, remove: str
) -> None:
    world, key_env, anchors = started_keyed_world(tmp_path)
    db = tmp_path / "db.sqlite"
    key_set = next(r[0] for r in rows(db) if r[2] == "audit-key-set")
    assert rows(db)[-1][0] > key_set  # the pass after it wrote events
    # The attack: the anchors removed and the log's newest event cut off.
    if remove == "delete":
        anchors.unlink()
    else:
        anchors.write_text("")
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)")
    code, out, err = cli(world, "log", "verify", env=key_env)
    state = "does not exist" if remove == "delete" else "holds no anchor"
    assert code == 1 and out.startswith("BROKEN:"), (out, err)
    assert f"broken: anchor file {anchors} {state}, but event {key_set} (audit-key-set)" in err
    # `log anchor` does not vouch for such a log either.
    code, _, err = cli(world, "log", "anchor", env=key_env)
    assert code == 1 and "refused: the log does not verify" in err
    assert not anchors.exists() or anchors.read_text() == ""


@pytest.mark.parametrize("remove", ["delete", "empty"])
def test_cli_log_verify_without_anchors_or_a_trace_of_anchoring_warns_what_went_unchecked(
    tmp_path: Path, remove: str
) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    cli(world, "audit")
    assert cli(world, "revoke", "--apply", "--person", "E2")[0] == 0
    events = len(rows(tmp_path / "db.sqlite"))
    anchors = tmp_path / "anchors.jsonl"
    if remove == "empty":
        anchors.write_text("")
    world.config_path.write_text(world.config_path.read_text() + f'\n[audit]\nanchor_file = "{anchors}"\n')
    code, out, err = cli(world, "log", "verify")
    # Anchoring configured but `log anchor` not run yet reads the same: exit 0, and a warning.
    state = "does not exist" if remove == "delete" else "holds no anchor"
    assert code == 0 and out.startswith("ok:"), err
    warning = " ".join(err.split())
    assert (
        f"warning: anchor file {anchors} {state}: none of the {events} events was checked against an anchor"
        in warning
    )
    assert "events cut off the end of the log" in warning and "run `log anchor`" in warning
    code, out, err = cli(world, "log", "anchor")
    assert code == 0 and out.startswith("anchored:"), err
    code, _, err = cli(world, "log", "verify")
    assert code == 0 and "warning:" not in err


def test_cli_log_verify_of_an_empty_log_without_its_anchor_file_only_notes_it(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    anchors = tmp_path / "anchors.jsonl"
    world.config_path.write_text(world.config_path.read_text() + f'\n[audit]\nanchor_file = "{anchors}"\n')
    code, out, err = cli(world, "log", "verify")
    assert code == 0 and out.startswith("ok: 0 events") and "warning:" not in err, err
    assert f"anchor file {anchors} does not exist yet" in " ".join(err.split())
