"""Tables that fit the terminal: one line per row, as many columns as the width allows.

Shared by the findings table (``table.py``) and the plan, held-back and outcome tables of
``plan``, ``revoke`` and ``undo``. A table names the columns it always shows (its compact
layout, which fits 80 columns) and the optional ones, most useful first; an optional column
appears only while every column still gets a comfortable width. Then the widest shortenable
column gives way, one cell at a time, down to its minimum. Ids are shortened from the middle
(both ends stay readable), names and emails at the end, and a column with its own ``render``
decides how its cells shorten (a status word, a credential kind or a "+1" stays whole). Only
a last column of prose (why a finding is held, an error) wraps instead: cut, it would say less.

Cells must already be terminal-safe (``table.safe``): they are measured as they are shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

SHORT_ID_MIN = 8


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, cut from the middle so both ends stay readable
    (``arn:aws:iam::1234…:user/bleaver``): ids differ at their ends, seldom in the middle."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    keep = width - 1
    head, tail = text[: (keep + 1) // 2], text[len(text) - keep // 2 :] if keep // 2 else ""
    while cell_len(head) + cell_len(tail) > keep:  # wide characters: drop until it fits
        if cell_len(head) >= cell_len(tail) and head:
            head = head[:-1]
        else:
            tail = tail[1:]
    return f"{head}…{tail}"


def shorten_end(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, cut at the end: a name or an email is read from its start."""
    if cell_len(text) <= width:
        return text
    if width <= 0:
        return ""
    while text and cell_len(text) > width - 1:
        text = text[:-1]
    return text + "…"


def short_ids(ids: Sequence[str], minimum: int = SHORT_ID_MIN) -> dict[str, str]:
    """Each id's shortest prefix of a common length (at least ``minimum``) unique among ``ids``."""
    distinct = set(ids)
    longest = max((len(i) for i in distinct), default=minimum)
    length = minimum
    while length < longest and len({i[:length] for i in distinct}) < len(distinct):
        length += 1
    return {i: i[:length] for i in distinct}


def kind_and_id(kind: str, cid: str, width: int) -> str:
    """A credential: the kind stays whole; the id gets what is left, shortened from the middle."""
    full = f"{kind} {cid}".strip()
    if cell_len(full) <= width:
        return full
    room = width - cell_len(kind) - 1
    if room >= 5:
        return f"{kind} {shorten(cid, room)}"
    return shorten_end(kind, width)


def word_kept(text: str, word: str, width: int) -> str:
    """``text`` then ``word``: ``text`` is cut at the end, ``word`` (a status, a "+1") never is."""
    full = f"{text} {word}" if text else word
    if cell_len(full) <= width:
        return full
    room = width - cell_len(word) - 1
    if room >= 4 and text:
        return f"{shorten_end(text, room)} {word}"
    return word


@dataclass
class Column:
    header: str
    cells: list[str]  # the full values, already terminal-safe
    flexible: bool = False  # may be shortened to fit
    minimum: int = 6  # never shortened below this
    comfortable: int = 0  # optional columns appear only when the flexible ones get this much
    styles: list[str] | None = None
    keep_start: bool = False  # cut at the end (names, emails), not in the middle (ids)
    render: Callable[[int, int], str] | None = None  # (row, width) -> the cell, for special shortening
    wrap: bool = False  # a last column of prose (a reason, an error): wrapped, never cut

    def natural(self) -> int:
        return max([cell_len(self.header), *(cell_len(c) for c in self.cells)])

    def cell(self, row: int, width: int) -> str:
        if self.wrap:
            return self.cells[row]
        if self.render is not None:
            return self.render(row, width)
        text = self.cells[row]
        return shorten_end(text, width) if self.keep_start else shorten(text, width)


def source_column(cells: list[str]) -> Column:
    """The source name column every action table has (cells already terminal-safe)."""
    return Column("source", cells, flexible=True, minimum=8, comfortable=12)


def account_column(cells: list[str]) -> Column:
    """The account name column every action table has (cells already terminal-safe)."""
    return Column("account", cells, flexible=True, minimum=8, comfortable=20, keep_start=True)


def _room(columns: Sequence[Column], width: int) -> int:
    return width - 2 * (len(columns) - 1)  # two spaces between columns


def fits_comfortably(columns: Sequence[Column], width: int) -> bool:
    need = sum(min(c.natural(), c.comfortable) if c.flexible else c.natural() for c in columns)
    return need <= _room(columns, width)


def fit(columns: Sequence[Column], width: int) -> list[int]:
    """Column widths that fit ``width``: fixed columns keep theirs, the widest flexible column
    gives way first, none below its minimum."""
    widths = [c.natural() for c in columns]
    room = _room(columns, width)
    flexible = [i for i, c in enumerate(columns) if c.flexible]
    while sum(widths) > room:
        candidates = [i for i in flexible if widths[i] > columns[i].minimum]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def choose(
    by_name: Mapping[str, Column], shown: Sequence[str], extra: Sequence[str], width: int
) -> list[str]:
    """The columns to show, in ``by_name``'s order: ``shown``, then each of ``extra`` (most
    useful first) while all of them still fit comfortably."""
    order = list(by_name)
    chosen = sorted(shown, key=order.index)
    for name in extra:
        if name in chosen:
            continue
        candidate = sorted([*chosen, name], key=order.index)
        if fits_comfortably([by_name[n] for n in candidate], width):
            chosen = candidate
    return chosen


def fitted_table(columns: Sequence[Column], rows: int, width: int, title: Text | None = None) -> Table:
    """The table of ``columns`` (``rows`` cells each), one line per row, within ``width``."""
    widths = fit(columns, width)
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        header_style="bold",
    )
    for c, w in zip(columns, widths, strict=True):
        table.add_column(c.header, no_wrap=not c.wrap, overflow="fold" if c.wrap else "ellipsis", max_width=w)
    for r in range(rows):
        table.add_row(
            *(
                Text(c.cell(r, w), style=c.styles[r] if c.styles else "")
                for c, w in zip(columns, widths, strict=True)
            )
        )
    return table
