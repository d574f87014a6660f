"""The pieces of the table format that the CLI tests exercise only through whole tables."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.cells import cell_len
from rich.console import Console

from offboard_audit.report.table import age, markup_safe, plain, safe, short_ids, shorten, shorten_end


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
