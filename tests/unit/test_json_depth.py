"""Issue 11 item 10 (the helper): JSON from outside is parsed with a nesting limit, and a document
too deep is a ``json.JSONDecodeError`` - what the webhook already answers with 422 - never the
``RecursionError`` that ``json.loads`` raises (a 500)."""

from __future__ import annotations

import json

import pytest

from offboard_audit.report.json import MAX_JSON_DEPTH, JsonTooDeep, loads_limited

# Under the webhook's 64 KiB body limit, and far deeper than json.loads can recurse.
SIGNED_SIZE_DEEP = '{"event_id": "e1", "x": ' + "[" * 30_000 + "]" * 30_000 + "}"
DEEP = "[" * 100_000  # not even well-formed: refused for its depth before anything else


def test_json_loads_alone_raises_recursion_error_on_a_deep_body() -> None:
    # Why the helper exists: this is not a ValueError, so `except JSONDecodeError` misses it.
    with pytest.raises(RecursionError):
        json.loads(SIGNED_SIZE_DEEP)


@pytest.mark.parametrize("body", [SIGNED_SIZE_DEEP, SIGNED_SIZE_DEEP.encode(), DEEP])
def test_too_deep_is_a_json_decode_error(body: str | bytes) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        loads_limited(body)
    assert isinstance(caught.value, JsonTooDeep)
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in str(caught.value)


def test_documents_within_the_limit_parse_exactly_as_json_loads_does() -> None:
    docs = [
        '{"event_id": "e1", "event": "employee.terminated", "employee_id": "E1", "email": null}',
        # brackets inside strings, escaped quotes and backslashes do not count as nesting
        '{"a": "[[[[{{{{", "b": "\\\\\\"]]]", "c": [1, {"d": [2, [3]]}]}',
        "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH,
        "42",
    ]
    for doc in docs:
        assert loads_limited(doc) == json.loads(doc)
    with pytest.raises(JsonTooDeep):
        loads_limited("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))


def test_malformed_and_non_utf8_bodies_fail_as_json_loads_fails() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_limited('{"a": ')
    with pytest.raises(UnicodeDecodeError):
        loads_limited(b"\xff\xfe{}")
