"""The evidence pack as JSON and as a self-contained HTML page (``report --person ID``).

:mod:`offboard_audit.report.evidence` gathers the pack; this module only renders it. The HTML page
escapes every value and carries a Content-Security-Policy that allows no script, no remote load
and only its own inline style (by hash): it is opened locally, from disk.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from offboard_audit.core.chain_history import ChainAction
from offboard_audit.core.records import FindingStatus
from offboard_audit.report import carry_away
from offboard_audit.report.carry_away import carried_json, carried_rows
from offboard_audit.report.evidence import Evidence


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _secs(d: timedelta | None) -> float | None:
    return d.total_seconds() if d is not None else None


def _human(d: timedelta | None) -> str:
    if d is None:
        return "-"
    total = int(d.total_seconds())
    days, rest = divmod(abs(total), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    sign = "-" if total < 0 else ""
    return f"{sign}{days}d {hours}h {minutes}m" if days else f"{sign}{hours}h {minutes}m"


def _step_label(a: ChainAction) -> str:
    return "undo" if a.undo_of is not None else "revoke"


def history_json(a: ChainAction) -> dict[str, Any]:
    """One step of a credential's history: an action or an undo, with its own times."""
    return {
        "step": _step_label(a),
        "action_id": a.action_id,
        "action": a.field("action"),
        "status": a.status,
        "error": a.error,
        "actor": a.actor,
        "undo_of": a.undo_of,
        "started_at": a.created_at.isoformat(),
        "at": a.done_at.isoformat(),
        "undone_by": a.undone_by,
        "undone_at": _iso(a.undone_at),
        "events": [s.seq for s in a.steps],
    }


BASIS = {
    "revocations": "hash-chained audit events (revoked_at, revoked_by, time to revoke, history, actions)",
    "inventory": "the latest stored audit (accounts, credentials, last use, findings): what the systems "
    "showed then, not part of the audit log",
    "carry_away": carry_away.BASIS,
}


def evidence_json(e: Evidence) -> dict[str, Any]:
    terminated = e.terminated_at
    full = e.fully_revoked_at
    info = {(a.source, a.account_id): a for a in e.accounts}
    accounts: dict[tuple[str, str], dict[str, Any]] = {}
    for c in e.credentials:
        extra = info.get((c.source, c.account_id))
        acct = accounts.setdefault(
            (c.source, c.account_id),
            {
                "source": c.source,
                "system": c.system,
                "id": c.account_id,
                "name": c.username,
                "display_name": extra.display_name if extra else "",
                "owner_hints": [list(h) for h in extra.owner_hints] if extra else [],
                "credentials": [],
            },
        )
        acct["credentials"].append(
            {
                "id": c.credential_id,
                "kind": c.kind,
                "active": c.active,
                "created_at": _iso(c.created_at),
                "last_used_at": _iso(c.last_used_at),
                "used_after_termination": bool(terminated and c.last_used_at and c.last_used_at > terminated),
                "finding": {"id": c.finding_id, "rule": c.rule, "status": c.finding_status}
                if c.finding_id
                else None,
                "revoked_at": _iso(c.revoked_at),
                "revoked_by": c.revoked_by,
                "revoked_by_action": c.revoked_by_action,
                "undone": c.undone,
                "time_to_revoke_seconds": _secs(c.time_to_revoke),
                "history": [history_json(a) for a in c.history],
            }
        )
    r = e.check.result
    return {
        "person": {
            "employee_id": e.employee_id,
            "records": [
                {
                    "source": p.source,
                    "email": p.email,
                    "name": p.name,
                    "status": p.status.value,
                    "terminated_at": _iso(p.terminated_at),
                }
                for p in e.people
            ],
        },
        "generated_at": e.generated_at.isoformat(),
        "basis": BASIS,
        "summary": {
            "terminated_at": _iso(terminated),
            "accounts": len(accounts),
            "credentials": len(e.credentials),
            "revoked": e.revoked,
            "open_findings": e.open_findings,
            "fully_revoked_at": _iso(full),
            "time_to_full_revocation_seconds": _secs(full - terminated) if full and terminated else None,
            "discrepancies": len(e.discrepancies),
            "secrets_could_carry_away": len(e.carried),
            "secrets_could_carry_away_open": sum(1 for x in e.carried if x.status == FindingStatus.OPEN),
        },
        "accounts": list(accounts.values()),
        "secrets_could_carry_away": [carried_json(x) for x in e.carried],
        "actions": [
            {
                "id": a.action_id,
                "finding_id": a.finding_id,
                "source": a.field("source"),
                "account": a.field("username"),
                "credential_id": a.field("credential_id"),
                "action": a.field("action"),
                "stage": a.field("stage"),
                "reversible": a.field("reversible"),
                "status": a.effective_status,
                "error": a.error,
                "actor": a.actor,
                "undo_of": a.undo_of,
                "created_at": a.created_at.isoformat(),
                "updated_at": a.updated_at.isoformat(),
                "done_at": a.done_at.isoformat(),
                "undone_by": a.undone_by,
                "undone_at": _iso(a.undone_at),
                "events": [s.seq for s in a.steps],
            }
            for a in e.actions
        ],
        "discrepancies": [
            {"action_id": d.action_id, "field": d.field, "actions_table": d.table, "audit_log": d.chain}
            | {"text": str(d)}
            for d in e.discrepancies
        ],
        "audit_log": {
            "mode": e.check.mode,
            "keyed": e.check.keyed,
            "anchored": e.check.anchored,
            "proves": e.check.proves,
            "chain_verified": e.chain_ok,
            "problems": list(e.chain_problems),
            "notes": [*e.check.warnings, *e.check.notes],
            "head_seq": r.head_seq,
            "head_hash": e.chain_head,
            "events_total": r.events,
            "keyed_events": r.keyed,
            "first_keyed_event": r.first_keyed,
            "macs_checked": r.macs_checked,
            "anchors_checked": r.anchors_checked,
            "anchored_up_to": r.anchored_seq,
            "events": [
                {
                    "seq": s.seq,
                    "at": s.at.isoformat(),
                    "kind": s.kind,
                    "actor": s.actor,
                    "action_id": a.action_id,
                    "hash": s.hash,
                    "keyed": s.keyed,
                }
                for a in e.actions
                for s in a.steps
            ],
        },
    }


# --- HTML -----------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}"
    ".bad{color:#b00;font-weight:bold}"
)


def content_security_policy(style: str = _STYLE) -> str:
    """No scripts, no remote (or any) loads, no forms, no base URL; the one inline style is
    allowed by its hash, so an injected ``<style>`` would not apply either."""
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; script-src 'none'; object-src 'none'; img-src 'none'; "
        f"style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


# Characters that reorder or hide the text around them when shown: bidirectional marks, embeddings,
# overrides and isolates (``bob\u202eexe.nimda`` reads as ``bobadmin.exe``), and the C0/C1
# controls but tab and newline. Escaping to HTML does not touch them.
_UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _shown(value: Any) -> Any:
    """Each value the page prints, with those characters as ``\\u202e``-style text, as the
    terminal shows them (``report/table.safe``); the page's own markup (its style) as it is."""
    from markupsafe import Markup

    if isinstance(value, str) and not isinstance(value, Markup):
        return _UNSHOWN.sub(_escape_char, value)
    return value


def _render(template: str, context: Mapping[str, Any]) -> str:
    """Render one of the package's Jinja2 templates with autoescaping (imported only here: a
    report is the only output that needs it)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("offboard_audit.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        finalize=_shown,
    )
    return env.get_template(template).render(**context)


def evidence_html(e: Evidence) -> str:
    """A self-contained HTML page (no scripts, no external resources, a restrictive CSP), from the
    ``templates/evidence.html.j2`` Jinja2 template with autoescaping on."""
    from markupsafe import Markup

    data = evidence_json(e)
    s = data["summary"]
    log = data["audit_log"]
    full = s["time_to_full_revocation_seconds"]
    credential_rows = [
        (
            c.source,
            c.username,
            c.kind,
            c.credential_id,
            "-" if c.active is None else ("active" if c.active else "inactive"),
            _iso(c.last_used_at) or "never",
            c.finding_status or "-",
            _iso(c.revoked_at) or "-",
            c.revoked_by or "-",
            _human(c.time_to_revoke),
            "undone" if c.undone else "",
        )
        for c in e.credentials
    ]
    history_rows = [
        (
            f"{c.username} {c.credential_id}",
            _step_label(a) + (f" of {a.undo_of}" if a.undo_of else ""),
            a.action_id,
            a.field("action"),
            a.status,
            a.actor,
            a.created_at.isoformat(),
            a.done_at.isoformat(),
            _iso(a.undone_at) or "",
        )
        for c in e.credentials
        for a in c.history
    ]
    context: dict[str, Any] = {
        "csp": content_security_policy(),
        # The one value passed as markup: the style whose SHA-256 the CSP allows, byte for byte.
        "style": Markup(_STYLE),  # noqa: S704 (a constant of this module, not data)
        "employee_id": e.employee_id,
        "name": ", ".join(sorted({p.name for p in e.people if p.name})) or e.employee_id,
        "generated_at": data["generated_at"],
        "terminated_at": s["terminated_at"],
        "s": s,
        "time_to_full": _human(timedelta(seconds=full)) if full is not None else "-",
        "basis": BASIS,
        "credential_headers": (
            "source",
            "account",
            "kind",
            "credential",
            "state",
            "last used",
            "finding",
            "revoked at (in force)",
            "by",
            "time to revoke",
            "",
        ),
        "credential_rows": credential_rows,
        "account_headers": ("source", "account", "display name", "owner hints"),
        "account_rows": [
            (a.source, a.account_id, a.display_name, "; ".join(f"{k}={v}" for k, v in a.owner_hints))
            for a in e.accounts
        ],
        "carry_title": carry_away.TITLE,
        "carried_headers": carry_away.HEADERS,
        "carried_rows": carried_rows(e.carried) if e.carried else [],
        "citations": sorted({ref: text for x in e.carried for ref, text in x.references}.items()),
        "history_headers": (
            "credential",
            "step",
            "action id",
            "action",
            "status",
            "actor",
            "started",
            "at",
            "undone at",
        ),
        "history_rows": history_rows,
        "discrepancy_headers": ("action", "field", "actions table", "audit log (used above)"),
        "discrepancy_rows": [(d.action_id, d.field, d.table, d.chain) for d in e.discrepancies],
        "log": log,
        "chain_ok": e.chain_ok,
        "chain": "verified" if e.chain_ok else "BROKEN: " + "; ".join(e.chain_problems),
        "chain_head": e.chain_head,
        "proves": [*log["proves"], *log["notes"]],
    }
    return _render("evidence.html.j2", context)
