"""What every output format shares: the :class:`Format` interface and the order, summary and
time format of findings. The formats themselves are ``table.py``, ``json.py`` and ``csv.py``;
``formats.py`` maps ``--format NAME`` to them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import ClassVar, TextIO

from offboard_audit.core.records import Finding, FindingStatus, Severity
from offboard_audit.core.runs import RunResult
from offboard_audit.core.stored import ActionRecord

# The actions per finding id, oldest first, as the revocation engine stored them (none before
# any revoke).
ActionInfo = Mapping[str, Sequence[ActionRecord]]

_SEVERITY_ORDER = {s: -s.rank for s in Severity}


class Format(ABC):
    """One output format of ``audit``, ``findings`` (and ``--output FILE``): writes to ``out``.

    Made for one output: ``actions`` are the stored actions of the findings it writes (None: the
    output lists no actions)."""

    name: ClassVar[str]

    def __init__(self, actions: ActionInfo | None = None) -> None:
        self.actions = actions

    @abstractmethod
    def write_run(self, out: TextIO, result: RunResult, *, not_read: Sequence[Finding] = ()) -> None:
        """A whole run: its sources, its findings (most severe first) and the summary;
        ``not_read``, the stored open findings of sources the run did not read, counted apart
        (:func:`offboard_audit.core.runs.open_not_read`)."""

    @abstractmethod
    def write_findings(self, out: TextIO, findings: Sequence[Finding], *, title: str = "findings") -> None:
        """Stored findings without a run; ``title`` names them (``open findings``)."""


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def sort_findings(findings: Sequence[Finding]) -> list[Finding]:
    return sorted(
        findings,
        key=lambda f: (_SEVERITY_ORDER[f.severity], f.source, f.account.username, f.finding_id),
    )


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    counts = {"critical": 0, "high": 0, "medium": 0, "low": 0}
    for f in findings:
        if f.status is FindingStatus.OPEN:
            counts[f.severity.value] = counts.get(f.severity.value, 0) + 1
    return counts


def latest_action(f: Finding, actions: ActionInfo | None) -> str:
    """The finding's latest action in one line (``action status time``), or "" if none."""
    if not actions:
        return ""
    acts = actions.get(f.finding_id)
    if not acts:
        return ""
    last = acts[-1]
    return f"{last.action} {last.status.value} {last.updated_at.isoformat()}"
