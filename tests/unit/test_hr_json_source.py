"""The ``hr_json`` source (``connectors/hr_records/source.py``): what it sends to the HR endpoint,
where it finds the list of people, and how every failure is reported (a failed read, never "everyone
left"). The endpoint is an ``httpx`` mock transport injected as the source's client, except where
the test is about the source's own client (its timeout)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.hr_records import make_json_source
from connectors.hr_records.source import JsonHRSource
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext

URL = "https://hr.example.com/api/people"
ALICE = {"employee_id": "E1", "email": "a@x.org", "name": "Alice", "status": "active", "termination_date": ""}
BOB = {
    "employee_id": "E2",
    "email": "b@x.org",
    "name": "Bob",
    "status": "terminated",
    "termination_date": "2026-01-31",
}


def url_source(handler: Any, env: dict[str, str] | None = None, **opts: Any) -> JsonHRSource:
    options = SourceOptions({"name": "hrj", "type": "hr_json", "url": URL, **opts}, "sources[1]")
    client = httpx.Client(transport=httpx.MockTransport(handler))
    ctx = SourceContext(base_dir=Path("."), env=env or {}, clients={"hrj": client})
    return make_json_source(options, ctx)


def file_source(tmp_path: Path, content: str | bytes, **opts: Any) -> JsonHRSource:
    path = tmp_path / "hr.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    options = SourceOptions({"name": "hrj", "type": "hr_json", "path": str(path), **opts}, "sources[1]")
    return make_json_source(options, SourceContext(base_dir=tmp_path))


def answer(doc: Any, status: int = 200) -> Any:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=doc)

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def test_the_request_asks_for_json_with_the_bearer_token_from_the_environment() -> None:
    handler = answer([ALICE])
    read = url_source(handler, {"HR_TOKEN": "s3cret"}, token_env="HR_TOKEN").read_people()
    (request,) = handler.seen
    assert (request.method, str(request.url)) == ("GET", URL)
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert [p.employee_id for p in read.people] == ["E1"]


def test_without_a_token_no_authorization_header_is_sent() -> None:
    handler = answer([ALICE])
    url_source(handler).read_people()
    assert "Authorization" not in handler.seen[0].headers


def test_an_endpoint_that_cannot_be_reached_is_a_failed_read_naming_it() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(SourceError) as err:
        url_source(refuse).read_people()
    assert str(err.value) == f"HR endpoint {URL} unreachable: connection refused"


def test_an_endpoint_answering_other_than_200_is_a_failed_read() -> None:
    with pytest.raises(SourceError) as err:
        url_source(answer({"error": "maintenance"}, status=502)).read_people()
    assert str(err.value) == f"HR endpoint {URL} answered HTTP 502"


@pytest.mark.parametrize("key", ["employees", "people", "workers", "data"])
def test_the_people_are_found_under_any_of_the_usual_keys(key: str) -> None:
    read = url_source(answer({"meta": {"count": 2}, key: [ALICE, BOB]})).read_people()
    assert [p.employee_id for p in read.people] == ["E1", "E2"]


def test_records_key_names_the_list_and_the_usual_keys_are_then_ignored() -> None:
    doc = {"employees": [ALICE], "rows": [BOB]}
    assert [p.employee_id for p in url_source(answer(doc), records_key="rows").read_people().people] == ["E2"]


def test_a_document_without_a_list_of_people_is_a_failed_read_saying_what_it_got() -> None:
    with pytest.raises(SourceError) as err:
        url_source(answer({"employees": "none"})).read_people()
    assert str(err.value) == f"{URL}: expected a list of people (or records_key), got dict"


def test_a_record_that_is_not_an_object_is_a_bad_record_with_its_number() -> None:
    read = url_source(answer([ALICE, "E9", BOB])).read_people()
    assert [p.employee_id for p in read.people] == ["E1", "E2"]
    assert [(p.line, p.message) for p in read.problems] == [
        (2, f"{URL} record line 2: has neither employee_id nor email")
    ]


def test_records_that_are_not_objects_do_not_count_as_having_the_required_keys() -> None:
    with pytest.raises(ConfigError) as err:
        url_source(answer([["employee_id", "email", "name", "status", "termination_date"]])).read_people()
    assert "have no key 'employee_id'" in str(err.value)


def test_a_missing_required_key_is_a_config_error_naming_the_columns_table_of_this_source() -> None:
    no_status = [{k: v for k, v in ALICE.items() if k != "status"}]
    with pytest.raises(ConfigError) as err:
        url_source(answer(no_status)).read_people()
    assert err.value.key == "sources.hrj.columns"
    assert str(err.value) == (
        f"sources.hrj.columns: HR records in {URL} have no key 'status'; map it with the `columns` table"
    )


def test_a_json_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    source = file_source(tmp_path, "\ufeff" + json.dumps([ALICE]))
    assert [p.email for p in source.read_people().people] == ["a@x.org"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json"])
def test_an_endpoint_answer_with_a_byte_order_mark_is_read_like_a_file_with_one(content_type: str) -> None:
    body = "\ufeff".encode() + json.dumps([ALICE, BOB]).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": content_type})

    people = url_source(handler).read_people().people
    assert [(p.employee_id, p.status.value) for p in people] == [("E1", "active"), ("E2", "terminated")]


def test_bad_records_of_a_file_name_the_file(tmp_path: Path) -> None:
    read = file_source(tmp_path, json.dumps([ALICE, {**BOB, "status": "retired"}])).read_people()
    path = tmp_path / "hr.json"
    assert [p.message for p in read.problems] == [
        f"{path} record line 2: unknown status 'retired' (map it with status_map)"
    ]


def test_a_file_that_cannot_be_read_is_a_failed_read_naming_it(tmp_path: Path) -> None:
    source = file_source(tmp_path, b"\xff\xfe[]")
    with pytest.raises(SourceError) as err:
        source.read_people()
    assert str(err.value).startswith(f"cannot read HR file {tmp_path / 'hr.json'}: ")


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(1.5)
        body = json.dumps([ALICE]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client gave up first, as it should
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/people"
    server.shutdown()
    server.server_close()


def test_the_configured_timeout_bounds_a_read_from_an_endpoint_that_does_not_answer(slow_server: str) -> None:
    options = SourceOptions({"name": "hrj", "type": "hr_json", "url": slow_server, "timeout": "0.3s"})
    source = make_json_source(options, SourceContext(base_dir=Path(".")))
    started = time.monotonic()
    with pytest.raises(SourceError, match="unreachable"):
        source.read_people()
    assert time.monotonic() - started < 1.2
