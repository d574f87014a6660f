"""The HTML evidence pack is opened locally by auditors: values from HR and from the systems
(names, account names, credential details) must come out as text, never as markup."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from offboard_audit.config import load_config
from offboard_audit.core.protocols import SourceContext
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.report.evidence import collect_evidence
from offboard_audit.report.evidence_render import evidence_html
from offboard_audit.storage.store import Store
from tests.support.aws import FAKE_AWS_ENV, SeedUser, seed_users
from tests.support.gcp import FakeGcp
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


# --- issue 11 item 7: a restrictive Content-Security-Policy, and hostile values from the real
# connectors (an AWS tag, a GCP service account description) ------------------------------------


class Policy(HTMLParser):
    """The Content-Security-Policy meta tags and the text of every <style> element."""

    def __init__(self) -> None:
        super().__init__()
        self.csp: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp.append(a.get("content") or "")
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def test_page_carries_a_csp_that_allows_no_script_no_remote_load_and_only_its_own_style(env: Env) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E1")
    page = evidence_html(collect_evidence(env.store, "E1", NOW + timedelta(minutes=1)))
    parsed = Policy()
    parsed.feed(page)
    (csp,) = parsed.csp
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'none'"] and directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"] and directives["form-action"] == ["'none'"]
    # No source anywhere may name a host or a scheme: nothing is loaded from anywhere.
    assert not any(":" in s and not s.startswith("'sha256-") for v in directives.values() for s in v)
    # The page's one inline style is allowed by its hash, nothing else (no 'unsafe-inline').
    (style,) = parsed.styles
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert directives["style-src"] == [f"'sha256-{digest}'"]
    # The policy must come before anything it governs.
    assert page.index("Content-Security-Policy") < page.index("<style>")


SVG = "<svg/onload=alert('gcp')>"


def test_hostile_hr_name_aws_tag_and_gcp_description_come_out_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, gcp_fake: FakeGcp
) -> None:
    for k, v in FAKE_AWS_ENV.items():
        monkeypatch.setenv(k, v)
    left = datetime(2026, 2, 1, tzinfo=UTC)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    seed_users([SeedUser("grace", tags={"email": "grace@example.com", "owner": IMG}, keys=[(left, None)])])
    state = gcp_fake.state
    state.add_project("acme-prod")
    state.add_service_account("acme-prod", "ci-deployer", description=f"owner: grace@example.com {SVG}")
    (tmp_path / "hr.csv").write_text(
        "employee_id,email,name,status,termination_date,aliases\n"
        f'E7,grace@example.com,"{SCRIPT}",terminated,2026-02-01,grace\n'
        "E8,alice@example.com,Alice,active,,alice\n"
    )
    config_path = tmp_path / "offboard-audit.toml"
    config_path.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "audit.db"}"

[policy]
max_new_terminations = 1.0

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "aws"
type = "aws_iam"
region = "us-east-1"
endpoint_url = "{moto_endpoint}"
service_specific_credentials = false

[[sources]]
name = "gcp"
type = "gcp_iam"
projects = ["acme-prod"]
iam_endpoint = "{gcp_fake.iam_endpoint}"
resource_manager_endpoint = "{gcp_fake.rest_url}"
policy_analyzer_endpoint = "{gcp_fake.rest_url}"
"""
    )
    config = load_config(config_path, env={})
    store = Store.open(config.database_url)
    try:
        Pipeline(config, store, SourceContext(base_dir=tmp_path)).run(now)
        evidence = collect_evidence(store, "E7", now)
    finally:
        store.engine.dispose()
    hints = {h for a in evidence.accounts for h in a.owner_hints}
    assert ("tag:owner", IMG) in hints
    assert ("description", f"owner: grace@example.com {SVG}") in hints

    page = evidence_html(evidence)
    parsed = Tags()
    parsed.feed(page)
    assert not {"script", "img", "svg"} & set(parsed.tags)
    assert not any(a.startswith("on") for a in parsed.attributes)
    text = "".join(parsed.text)
    assert SCRIPT in text and IMG in text and SVG in text


# A right-to-left override makes what follows it read backwards: "bob\u202eexe.nimda" is shown
# as "bobadmin.exe". In the terminal such characters are shown as text (``report/table.safe``).
RLO = "\u202e"


def test_bidi_overrides_in_names_are_shown_as_text_never_reorder_the_page(env: Env) -> None:
    name = f"Alice {RLO}nitraM"
    username = f"alice{RLO}nimda"
    env.world.write_hr(
        [
            ("E1", "alice@example.com", name, "terminated", "2026-01-10"),
            ("E2", "bob@example.com", "Bob", "terminated", "2026-01-12"),
        ]
    )

    def hostile(st: dict) -> None:
        alice = next(a for a in st["accounts"] if a["id"] == "alice")
        alice["username"] = username

    env.world.update(hostile)
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E1")
    page = evidence_html(collect_evidence(env.store, "E1", NOW + timedelta(minutes=1)))

    parsed = Tags()
    parsed.feed(page)
    text = "".join(parsed.text)
    # No character that reorders or hides text reaches the page...
    assert not any(
        ch in text for ch in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    )
    # ...and the reader sees that the name holds one, as the terminal shows it.
    assert "Alice \\u202enitraM" in text and "alice\\u202enimda" in text
