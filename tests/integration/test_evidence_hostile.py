"""The HTML evidence pack is opened locally by auditors: values from HR and from the systems
(names, account names, credential details) must come out as text, never as markup."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser

from offboard_audit.report.evidence import collect_evidence, evidence_html
from tests.support.revocation import NOW, Env

SCRIPT = "<script>alert('hr')</script>"
IMG = '<img src=x onerror="alert(1)">'
DETAIL = '"><svg onload=alert(2)>'


class Tags(HTMLParser):
    """Every start tag and attribute name, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_hostile_names_and_details_are_shown_as_text_never_as_markup(env: Env) -> None:
    env.world.write_hr(
        [
            ("E1", "alice@example.com", SCRIPT, "terminated", "2026-01-10"),
            ("E2", "bob@example.com", "Bob", "terminated", "2026-01-12"),
        ]
    )

    def hostile(st: dict) -> None:
        alice = next(a for a in st["accounts"] if a["id"] == "alice")
        alice["username"] = IMG
        group = next(c for c in st["credentials"] if c["id"] == "group/g-admins")
        group["detail"] = DETAIL

    env.world.update(hostile)
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E1")
    page = evidence_html(collect_evidence(env.store, "E1", NOW + timedelta(minutes=1)))

    parsed = Tags()
    parsed.feed(page)
    assert not {"script", "img", "svg"} & set(parsed.tags)
    assert not {"onerror", "onload"} & set(parsed.attributes)
    # The values the page shows are still there for the reader, as text.
    text = "".join(parsed.text)
    assert SCRIPT in text and IMG in text
