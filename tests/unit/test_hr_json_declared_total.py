"""An ``hr_json`` answer that says it holds more people than it does is a partial read.

APIs paged by offset (``?offset=100&limit=100``) name no next page: they answer the first page with
the total, ``{"total": 500, "employees": [...100 people]}``. Taken for the whole workforce, the 400
others were never seen, on the first read (the baseline: no breaker) and on every read after it
(the same 100 each time): their terminations unseen for good. A count beside the list of people that
is larger than the people read fails the read; a count equal to it (or smaller) is fine, and with
``max_pages`` the count is checked against every page read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.hr_records import make_json_source
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from tests.unit.test_hr_json_pages import HRServer, Page, hr, link_next, person, source

__all__ = ["hr"]  # the HTTP server fixture


@pytest.mark.parametrize(
    ("doc", "key", "opts"),
    [
        ({"total": 500, "employees": [person(1), person(2)]}, "total", {}),
        ({"data": [person(1)], "meta": {"totalCount": 3}}, "meta.totalCount", {}),
        ({"value": [person(1)], "@odata.count": 2}, "@odata.count", {"records_key": "value"}),
        ({"items": [person(1)], "count": 100}, "count", {"records_key": "items"}),
    ],
)
def test_an_answer_declaring_more_people_than_it_holds_fails_the_read(
    hr: HRServer, doc: dict[str, Any], key: str, opts: dict[str, Any]
) -> None:
    hr.pages["/people"] = Page(doc)
    with pytest.raises(SourceError, match=rf"JSON key {key} says .* people, .* read"):
        source(hr, **opts).read_people()


def test_a_count_equal_to_the_people_read_is_fine(hr: HRServer) -> None:
    hr.pages["/people"] = Page({"total": 2, "count": 2, "employees": [person(1), person(2)]})
    assert len(source(hr).read_people().people) == 2


def test_a_count_that_is_not_a_number_is_not_a_count(hr: HRServer) -> None:
    hr.pages["/people"] = Page({"total": True, "meta": {"count": "9"}, "employees": [person(1)]})
    assert len(source(hr).read_people().people) == 1


def test_with_max_pages_the_total_is_of_every_page_read(hr: HRServer) -> None:
    hr.pages["/people"] = Page(
        {"total": 3, "employees": [person(1), person(2)]}, headers=link_next("/people?p=2")
    )
    hr.pages["/people?p=2"] = Page({"total": 3, "employees": [person(3)]})
    assert len(source(hr, max_pages=2).read_people().people) == 3


def test_with_max_pages_a_total_above_every_page_read_fails_the_read(hr: HRServer) -> None:
    hr.pages["/people"] = Page(
        {"total": 9, "employees": [person(1), person(2)]}, headers=link_next("/people?p=2")
    )
    hr.pages["/people?p=2"] = Page({"total": 9, "employees": [person(3)]})
    with pytest.raises(SourceError, match=r"JSON key total says 9 people, 3 read"):
        source(hr, max_pages=2).read_people()


def test_a_json_file_declaring_more_people_than_it_holds_fails_the_read(tmp_path: Path) -> None:
    path = tmp_path / "hr.json"
    path.write_text(json.dumps({"totalResults": 250, "employees": [person(1)]}), encoding="utf-8")
    options = SourceOptions({"name": "hrj", "type": "hr_json", "path": str(path)})
    with pytest.raises(SourceError, match=r"JSON key totalResults says 250 people, 1 read"):
        make_json_source(options, SourceContext(base_dir=tmp_path)).read_people()
