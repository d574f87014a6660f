"""Whether an ``hr_json`` answer is one page of several, and which next page may be read.

An HR API that pages answers a plain ``GET`` with its first page. Taken for the whole workforce,
everyone on the later pages would be missing from the read: their terminations unseen, their
accounts orphans. So any next-page marker fails the read, unless the source follows the pages
(``max_pages``), which it does for the HTTP ``Link: <...>; rel="next"`` header only: the one
form whose meaning (a URL to ``GET`` with the same request) needs no guess.

Pure: no I/O. The markers are looked for outside the list of people (keys of the document and of
the objects it holds, a few levels deep), never inside a person's record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

# Keys naming the next page (a URL, a page number, a token or cursor), compared lower-cased and
# without punctuation: "next_page_token", "nextPageToken" and "@odata.nextLink" all match.
_NEXT_KEYS = frozenset(
    {
        "next",
        "nextpage",
        "nextpagetoken",
        "nexttoken",
        "nextcursor",
        "nexturl",
        "nextlink",
        "nextpageurl",
        "nextpagelink",
        "odatanextlink",
    }
)
# Keys that say, as true or false, whether more pages follow.
_MORE_KEYS = frozenset({"hasmore", "hasnext", "hasnextpage", "moreresults", "moreavailable"})
# Keys holding how many records the whole answer has (APIs paged by offset name no next page but
# say the total), compared as ``_NEXT_KEYS`` are.
_TOTAL_KEYS = frozenset(
    {
        "total",
        "count",
        "totalcount",
        "totalresults",
        "totalrecords",
        "totalitems",
        "totalsize",
        "totalentries",
        "totalelements",
        "odatacount",
    }
)
# How deep into the document's other values markers are looked for (meta.pagination.links.next).
_DEPTH = 4
_LINK_NEXT = re.compile(r"""rel\s*=\s*"?[^";,]*\bnext\b""", re.IGNORECASE)


def _plain(key: str) -> str:
    return re.sub(r"[^a-z]", "", key.lower())


def _says_more(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _names_a_page(value: Any) -> bool:
    # None, false, "", 0 and empty containers are how last pages say there is no next one.
    return value is not None and value is not False and value != 0 and value not in ("", [], {})


def _rel_next(value: Mapping[Any, Any]) -> bool:
    rel = value.get("rel")
    return isinstance(rel, str) and "next" in rel.lower().split()


def body_marker(doc: Any, records: list[Any]) -> str | None:
    """The first next-page marker of a JSON answer outside its list of people ``records``, as a
    path for an error message (``next_cursor``, ``links.next``, ``links[1] rel=next``), or None."""
    return _marker(doc, records, "", 0) if isinstance(doc, dict) else None


def _marker(value: Any, records: list[Any], where: str, depth: int) -> str | None:
    if value is records or depth > _DEPTH:
        return None
    if isinstance(value, dict):
        if depth > 0 and _rel_next(value):
            return f"{where} rel=next"
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            plain = _plain(str(key))
            if (plain in _NEXT_KEYS and _names_a_page(item)) or (plain in _MORE_KEYS and _says_more(item)):
                return path
            if (found := _marker(item, records, path, depth + 1)) is not None:
                return found
    elif isinstance(value, list):
        # Only link objects ({"rel": "next", "href": ...}) in lists: other lists hold records.
        for i, item in enumerate(value):
            if isinstance(item, dict) and _rel_next(item):
                return f"{where}[{i}] rel=next"
    return None


def declared_total(doc: Any, records: list[Any]) -> tuple[str, int] | None:
    """The largest count of records a JSON answer declares outside its list of people ``records``
    (``total``, ``meta.totalCount``, ``@odata.count``), with its path, or None."""
    found: list[tuple[str, int]] = []
    if isinstance(doc, dict):
        _totals(doc, records, "", 0, found)
    return max(found, key=lambda f: f[1]) if found else None


def _totals(
    value: dict[Any, Any], records: list[Any], where: str, depth: int, found: list[tuple[str, int]]
) -> None:
    for key, item in value.items():
        if item is records:
            continue
        path = f"{where}.{key}" if where else str(key)
        # A number only (bool is an int in Python, and a string may be anything).
        if _plain(str(key)) in _TOTAL_KEYS and isinstance(item, int) and not isinstance(item, bool):
            found.append((path, item))
        elif isinstance(item, dict) and depth < _DEPTH:
            _totals(item, records, path, depth + 1, found)


def link_next(header: str | None, links: Mapping[str | None, Mapping[str, str]]) -> tuple[bool, str | None]:
    """Whether the ``Link`` header names a next page, and its URL as written (None when the
    header says ``rel=next`` but no URL can be read from it). ``links``: httpx's parse of it."""
    for rel, link in links.items():
        if "next" in str(link.get("rel", rel)).lower().split() and link.get("url"):
            return True, link["url"]
    return bool(header and _LINK_NEXT.search(header)), None


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """Scheme, host and port (the scheme's default when the URL has none); None if unreadable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, a broken IPv6 address
        return None
    return (
        parts.scheme.lower(),
        (parts.hostname or "").lower(),
        port or {"https": 443, "http": 80}.get(parts.scheme),
    )


def same_origin(url: str, other: str) -> bool:
    """Whether ``url`` has ``other``'s scheme, host and port."""
    mine = _origin(url)
    return mine is not None and mine == _origin(other)


def origin_text(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, without any user or password it may carry."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def resolve(base: str, url: str) -> str:
    """``url`` (from a Link header) made absolute against the page that named it."""
    return urljoin(base, url)
