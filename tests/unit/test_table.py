"""The pieces of the table format that the CLI tests exercise only through whole tables."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rich.cells import cell_len
from rich.console import Console

from offboard_audit.core.records import CredentialKind, Finding, FindingStatus, Rule
from offboard_audit.core.stored import ActionStatus
from offboard_audit.report.table import (
    age,
    findings_table,
    markup_safe,
    plain,
    safe,
    short_ids,
    shorten,
    shorten_end,
)
from tests.support.fakes import T0, account, action_record, credential, leaver, person


def test_safe_shows_every_control_and_reordering_character_as_text() -> None:
    assert safe("a\x1b[31mb") == "a\\x1b[31mb"
    assert safe("\x9b2J") == "\\x9b2J"  # the 8-bit CSI some terminals honour
    assert safe("tab\there\nline\r") == "tab\\x09here\\x0aline\\x0d"
    assert safe("evil\u202egnp.exe") == "evil\\u202egnp.exe"  # right-to-left override
    assert safe("Zoë 山田 mal[/x]lory") == "Zoë 山田 mal[/x]lory"  # printable text is kept


def test_plain_and_markup_safe_never_parse_the_value_as_markup() -> None:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(plain("mal[/x]lory [bold]x[/bold]"))
    console.print(f"[red]refused:[/] {markup_safe('[/x] [link=http://evil]y')}")
    text = console.export_text()
    assert "mal[/x]lory [bold]x[/bold]" in text and "refused: [/x] [link=http://evil]y" in text


def test_shorten_keeps_both_ends_and_fits_wide_characters() -> None:
    arn = "arn:aws:iam::123456789012:user/bleaver"
    assert shorten(arn, 20) == "arn:aws:ia…r/bleaver" and cell_len(shorten(arn, 20)) == 20
    assert shorten("short", 20) == "short"
    wide = "山田太郎山田太郎山田太郎"
    assert cell_len(shorten(wide, 9)) <= 9 and "…" in shorten(wide, 9)
    assert shorten_end("carol.g@corp.example.com", 12) == "carol.g@cor…"


def test_short_ids_grow_until_the_shown_findings_differ() -> None:
    ids = ["1734a56c8f7eaab521d5", "1734a56d75985a312fbd", "9f00aa00aa00aa00aa00"]
    assert short_ids(ids) == {i: i[:8] for i in ids}
    clash = ["abcdef0123456789aaaa", "abcdef0123456789bbbb"]
    assert short_ids(clash) == {clash[0]: "abcdef0123456789a", clash[1]: "abcdef0123456789b"}


def test_age_reads_like_kubectl() -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    assert [age(now - d, now) for d in (timedelta(minutes=5), timedelta(hours=30), timedelta(days=59))] == [
        "5m",
        "30h",
        "59d",
    ]
    assert age(now - timedelta(days=800), now) == "2y"
    assert age(None, now) == "-" and age(now + timedelta(days=1), now) == "0m"


# --- the 80-column findings table never misattributes a row --------------------------------------


def finding(rule: Rule, fid: str, **changes: object) -> Finding:
    acct = account("cgone", username="cgone")
    base = Finding(
        fid, rule, rule.severity, FindingStatus.OPEN, acct, None, None, T0, T0, "reason", stale=False
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def table_at(findings: list[Finding], width: int) -> tuple[str, list[str]]:
    """The header and the rows of the findings table at ``width`` columns."""
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(findings_table(findings, width=width, now=T0 + timedelta(days=30)))
    lines = console.export_text().splitlines()
    assert all(cell_len(line) <= width for line in lines)
    return lines[0], lines[2:]  # the header's rule between them


def rows_at(findings: list[Finding], width: int) -> list[str]:
    return table_at(findings, width)[1]


def test_an_ambiguous_owner_never_shows_one_cut_off_candidate_as_the_person() -> None:
    smith = person("E8", email="heidi.smith@example.com")
    jones = person("E9", email="heidi.jones@example.com")
    ambiguous = finding(Rule.AMBIGUOUS_OWNER, "f-amb", candidates=(smith, jones))
    (narrow,) = rows_at([ambiguous], 80)
    assert "heidi.sm" in narrow and " +1 " in narrow  # the first candidate, and one more
    (wide,) = rows_at([ambiguous], 200)
    assert "heidi.smith@example.com | heidi.jones@example.com" in wide


def test_a_credential_the_leaver_made_for_another_account_does_not_read_as_their_own() -> None:
    carol = leaver("E3", email="carol@example.com")
    key = credential(account("svc-build"), "AKIARZPUZDIKG4NYZKNC")
    secret = credential(account("vault"), "prod/token-signing-key", kind=CredentialKind.SECRET)
    own = finding(Rule.CREDENTIAL_AFTER_TERMINATION, "f-own", person=carol, credential=key)
    made = finding(Rule.PERSISTENCE_LEFT_BY_LEAVER, "f-made", person=carol, credential=key)
    seen = finding(Rule.SECRET_EXPOSED_TO_LEAVER, "f-seen", person=carol, credential=secret)
    rows = {row.split()[0]: row for row in rows_at([own, made, seen], 80)}
    assert "rule" not in table_at([own, made, seen], 80)[0]  # the compact layout has no rule column
    assert " made access_key" in rows["f-made"]
    assert " exposed secret" in rows["f-seen"]
    assert " made " not in rows["f-own"] and " access_key AKIA" in rows["f-own"]


def test_the_latest_action_column_never_cuts_the_status_word() -> None:
    carol = leaver("E3", email="carol.g@corp.example.com")
    key = credential(account("svc"), "AKIARZPUZDIKG4NYZKNC")
    f = finding(Rule.CREDENTIAL_AFTER_TERMINATION, "f-1", person=carol, credential=key)
    for status in (ActionStatus.APPLIED, ActionStatus.FAILED, ActionStatus.UNDONE):
        act = action_record(T0, finding_id="f-1", action="deactivate_signing_certificate", status=status)
        widths = []
        for width in range(80, 260, 3):
            console = Console(width=width, file=io.StringIO(), record=True)
            console.print(findings_table([f], {"f-1": [act]}, width=width, now=T0))
            header, _, row = console.export_text().splitlines()[:3]
            if "latest action" in header:
                widths.append(width)
                assert f" {status.value}" in row, (width, row)
        assert widths  # the column appeared, narrow and wide


def test_a_status_column_at_80_columns_fits_with_whole_status_words() -> None:
    carol = leaver("E3", email="carol.g@corp.example.com")
    key = credential(account("svc"), "AKIARZPUZDIKG4NYZKNC")
    expected = {"f-1": "revoked", "f-2": "exempted", "f-3": "resolved", "f-4": "open (stale)"}
    rows = [
        finding(Rule.CREDENTIAL_AFTER_TERMINATION, fid, person=carol, credential=key, status=FindingStatus(s))
        for fid, s in list(expected.items())[:3]
    ] + [finding(Rule.CREDENTIAL_AFTER_TERMINATION, "f-4", person=carol, credential=key, stale=True)]
    header, lines = table_at(rows, 80)  # every line within 80 columns
    assert header.split()[-1] == "status"
    assert {line.split()[0]: line.rstrip() for line in lines}.keys() == expected.keys()
    for line in lines:
        assert line.rstrip().endswith(f"  {expected[line.split()[0]]}"), line
