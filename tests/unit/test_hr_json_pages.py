"""A paginated HR answer (``connectors/hr_records/source.py``, ``paging.py``): an ``hr_json`` read
never takes one page for the whole workforce. An answer that says more pages follow (an HTTP
``Link: <...>; rel="next"`` header, or a next-page key beside the list of people) fails the read,
unless ``max_pages`` lets the source follow the ``Link`` pages: then only pages of the configured
URL's scheme, host and port are read, each checked as the first one, and any page's failure fails
the read. The endpoint is a real HTTP server on the loopback interface."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectors.hr_records import make_json_source
from connectors.hr_records.source import JsonHRSource
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext


def person(n: int, status: str = "active", left: str = "") -> dict[str, str]:
    return {
        "employee_id": f"E{n}",
        "email": f"p{n}@x.org",
        "name": f"P{n}",
        "status": status,
        "termination_date": left,
    }


@dataclass
class Page:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class HRServer:
    """Serves ``pages`` (by path and query) and records each request's path and headers."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    owner.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                page = owner.pages.get(self.path, Page({"error": "not found"}, 404))
                body = page.body if isinstance(page.body, bytes) else json.dumps(page.body).encode()
                self.send_response(page.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in page.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        # A short poll interval: shutdown() waits up to one for the serving loop to notice it.
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hr() -> Iterator[HRServer]:
    server = HRServer()
    yield server
    server.stop()


@pytest.fixture
def elsewhere() -> Iterator[HRServer]:
    server = HRServer()
    yield server
    server.stop()


def source(server: HRServer, path: str = "/people", **opts: Any) -> JsonHRSource:
    options = SourceOptions(
        {"name": "hrj", "type": "hr_json", "url": server.base + path, "token_env": "HR_TOKEN", **opts}
    )
    return make_json_source(options, SourceContext(base_dir=Path("."), env={"HR_TOKEN": "s3cret"}))


def link_next(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="next"'}


# --- an answer that says more pages follow fails the read --------------------------------------


def test_an_answer_with_a_link_next_header_fails_the_read_and_the_next_page_is_not_read(hr: HRServer) -> None:
    hr.pages["/people"] = Page([person(1), person(2)], headers=link_next(f"{hr.base}/people?page=2"))
    hr.pages["/people?page=2"] = Page([person(3, "terminated", "2026-01-31")])
    with pytest.raises(SourceError) as err:
        source(hr).read_people()
    assert str(err.value) == (
        f"HR endpoint {hr.base}/people answered one page of several (next-page marker: HTTP header "
        'Link rel="next"); not taking it for the whole workforce: set max_pages to follow the Link '
        "pages, or have the endpoint return every person in one answer"
    )
    assert [path for path, _ in hr.requests] == ["/people"]


@pytest.mark.parametrize(
    ("doc", "marker", "opts"),
    [
        ({"employees": [person(1)], "next": "/people?page=2"}, "next", {}),
        ({"data": [person(1)], "next_page": 2}, "next_page", {}),
        ({"employees": [person(1)], "nextPageToken": "CgRFMTAw"}, "nextPageToken", {}),
        ({"people": [person(1)], "next_cursor": "c2"}, "next_cursor", {}),
        ({"workers": [person(1)], "has_more": True}, "has_more", {}),
        ({"items": [person(1)], "hasMore": True, "count": 1}, "hasMore", {"records_key": "items"}),
        ({"data": [person(1)], "links": {"self": "/people", "next": "/people?page=2"}}, "links.next", {}),
        (
            {"data": [person(1)], "response_metadata": {"next_cursor": "dXNlcjpF"}},
            "response_metadata.next_cursor",
            {},
        ),
        (
            {"value": [person(1)], "@odata.nextLink": "/people?$skip=1"},
            "@odata.nextLink",
            {"records_key": "value"},
        ),
        (
            {"data": [person(1)], "links": [{"rel": "self", "href": "/p"}, {"rel": "next", "href": "/p?2"}]},
            "links[1] rel=next",
            {},
        ),
    ],
)
def test_an_answer_with_a_next_page_key_beside_the_people_fails_the_read_naming_the_key(
    hr: HRServer, doc: dict[str, Any], marker: str, opts: dict[str, Any]
) -> None:
    hr.pages["/people"] = Page(doc)
    with pytest.raises(SourceError) as err:
        source(hr, **opts).read_people()
    assert str(err.value) == (
        f"HR endpoint {hr.base}/people answered one page of several (next-page marker: JSON key {marker}); "
        "not taking it for the whole workforce: have the endpoint return every person in one answer "
        '(only pages named by a Link rel="next" header are followed, with max_pages)'
    )


def test_a_json_file_that_is_one_page_of_a_paginated_answer_fails_the_read(tmp_path: Path) -> None:
    path = tmp_path / "hr.json"
    path.write_text(json.dumps({"employees": [person(1)], "next_cursor": "c2"}), encoding="utf-8")
    options = SourceOptions({"name": "hrj", "type": "hr_json", "path": str(path)})
    with pytest.raises(SourceError) as err:
        make_json_source(options, SourceContext(base_dir=tmp_path)).read_people()
    assert str(err.value) == (
        f"HR file {path} is one page of a paginated answer (next-page marker: JSON key next_cursor); "
        "not taking it for the whole workforce"
    )


# --- max_pages: following the Link pages ------------------------------------------------------


def test_with_max_pages_every_link_page_is_read_with_the_token_until_one_names_no_next(hr: HRServer) -> None:
    # A relative next link, then an absolute one; the last page's keys say there is no more.
    hr.pages["/people"] = Page({"employees": [person(1), person(2)]}, headers=link_next("/people?page=2"))
    hr.pages["/people?page=2"] = Page(
        {"employees": [person(3, "terminated", "2026-01-31")], "has_more": True},
        headers=link_next(f"{hr.base}/people?page=3"),
    )
    hr.pages["/people?page=3"] = Page(
        {"employees": [person(4), {"email": "x@x.org"}], "next": None, "has_more": False, "next_cursor": ""}
    )
    read = source(hr, max_pages=3).read_people()
    assert [(p.employee_id, p.status.value) for p in read.people] == [
        ("E1", "active"),
        ("E2", "active"),
        ("E3", "terminated"),
        ("E4", "active"),
    ]
    # Records are numbered across the pages.
    assert [p.message for p in read.problems] == [f"{hr.base}/people record line 5: has no employee_id"]
    assert [path for path, _ in hr.requests] == ["/people", "/people?page=2", "/people?page=3"]
    assert {(h["authorization"], h["accept"]) for _, h in hr.requests} == {
        ("Bearer s3cret", "application/json")
    }


def test_a_next_page_past_max_pages_fails_the_read_and_is_not_read(hr: HRServer) -> None:
    hr.pages["/people"] = Page([person(1)], headers=link_next("/people?page=2"))
    hr.pages["/people?page=2"] = Page([person(2)], headers=link_next("/people?page=3"))
    hr.pages["/people?page=3"] = Page([person(3)])
    with pytest.raises(SourceError) as err:
        source(hr, max_pages=2).read_people()
    assert str(err.value) == (
        f"HR endpoint {hr.base}/people page 2 ({hr.base}/people?page=2) names a next page after "
        "max_pages = 2 pages; not taking the pages read for the whole workforce (raise max_pages)"
    )
    assert [path for path, _ in hr.requests] == ["/people", "/people?page=2"]


@pytest.mark.parametrize(
    "next_url",
    [
        "http://localhost:{port}/people?page=2",  # another host name
        "https://127.0.0.1:{port}/people?page=2",  # another scheme
        "http://127.0.0.1:{other}/people?page=2",  # another port
        "//hr.example.org/people?page=2",  # another host, scheme-relative
    ],
)
def test_a_next_page_elsewhere_than_the_configured_url_fails_the_read_and_gets_no_request(
    hr: HRServer, elsewhere: HRServer, next_url: str
) -> None:
    url = next_url.format(port=hr.port, other=elsewhere.port)
    hr.pages["/people"] = Page([person(1)], headers=link_next(url))
    hr.pages["/people?page=2"] = elsewhere.pages["/people?page=2"] = Page([person(2)])
    with pytest.raises(SourceError) as err:
        source(hr, max_pages=5).read_people()
    resolved = url if url.startswith("http") else "http:" + url
    assert str(err.value) == (
        f"HR endpoint {hr.base}/people names a next page {resolved} elsewhere than {hr.base} "
        "(pages are read from the configured url's scheme, host and port only)"
    )
    assert [path for path, _ in hr.requests] == ["/people"] and elsewhere.requests == []


@pytest.mark.parametrize(
    ("page2", "error"),
    [
        (
            Page({"error": "busy"}, 502),
            "HR endpoint {base}/people page 2 ({base}/people?page=2) answered HTTP 502",
        ),
        (Page(b"[{"), "{base}/people page 2 ({base}/people?page=2) is not valid JSON: "),
        (
            Page({"error": "gone"}),
            "{base}/people page 2 ({base}/people?page=2): expected a list of people "
            "(or records_key), got dict",
        ),
        (
            Page({"employees": [person(2)], "next_cursor": "c3"}),
            "HR endpoint {base}/people page 2 ({base}/people?page=2) answered one page of several "
            "(next-page marker: JSON key next_cursor)",
        ),
    ],
)
def test_any_failing_page_fails_the_whole_read(hr: HRServer, page2: Page, error: str) -> None:
    hr.pages["/people"] = Page({"employees": [person(1)]}, headers=link_next("/people?page=2"))
    hr.pages["/people?page=2"] = page2
    with pytest.raises(SourceError) as err:
        source(hr, max_pages=5).read_people()
    assert str(err.value).startswith(error.format(base=hr.base))


def test_a_link_header_saying_next_without_a_readable_url_fails_the_read(hr: HRServer) -> None:
    hr.pages["/people"] = Page([person(1)], headers={"Link": '<>; rel="next"'})
    with pytest.raises(SourceError) as err:
        source(hr, max_pages=3).read_people()
    assert (
        str(err.value) == f'HR endpoint {hr.base}/people has a Link rel="next" header without a readable URL'
    )


def test_a_next_link_back_to_a_page_already_read_fails_the_read(hr: HRServer) -> None:
    hr.pages["/people"] = Page([person(1)], headers=link_next("/people?page=2"))
    hr.pages["/people?page=2"] = Page([person(2)], headers=link_next("/people"))
    with pytest.raises(SourceError) as err:
        source(hr, max_pages=10).read_people()
    assert str(err.value) == (
        f"HR endpoint {hr.base}/people page 2 ({hr.base}/people?page=2) names as its next page "
        f"{hr.base}/people, a page already read"
    )
    assert [path for path, _ in hr.requests] == ["/people", "/people?page=2"]


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"max_pages": 0}, "sources.hrj.max_pages: must be at least 1, got 0"),
        ({"max_pages": "all"}, "sources.hrj.max_pages: must be an integer, got 'all'"),
        (
            {"max_pages": 3, "path": "hr.json"},
            "sources.hrj.max_pages: follows the pages of url; a file has one",
        ),
    ],
)
def test_a_bad_max_pages_is_a_config_error_naming_it(opts: dict[str, Any], message: str) -> None:
    raw: dict[str, Any] = {"name": "hrj", "type": "hr_json", "url": "https://hr.example.com/people", **opts}
    if "path" in opts:
        del raw["url"]
    with pytest.raises(ConfigError) as err:
        make_json_source(SourceOptions(raw, "sources.hrj"), SourceContext(base_dir=Path(".")))
    assert str(err.value) == message
