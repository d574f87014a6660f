"""Notification texts quote names and errors from HR and from the systems (a person's name, an
account name, a secret's path, an error): in the ``text`` a chat tool shows they must stay text.
Slack (and Mattermost, which reads Slack's syntax) treats ``<...>`` as a control sequence:
``<!channel>`` pings everyone, ``<https://host|words>`` is a link that shows only ``words``.
Slack's rule for text: escape ``&``, ``<`` and ``>`` as ``&amp;``, ``&lt;``, ``&gt;``."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from offboard_audit.config.sections import NotificationConfig
from offboard_audit.core.records import (
    Account,
    Credential,
    CredentialKind,
    Finding,
    FindingStatus,
    Rule,
)
from offboard_audit.core.runs import RunResult
from offboard_audit.daemon.notify import Notifier
from offboard_audit.daemon.summary import run_messages
from tests.support.fakes import leaver

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
PING = "<!channel>"
LINK = "<https://sso-reset.example/login|Reset your SSO password now>"
NAME = f"Mallory {PING} & co"
SECRET = f"prod/{LINK}"


def _finding() -> Finding:
    acct = Account("vault", "vault", "entity-1", f"mallory {LINK}", True)
    cred = Credential("vault", acct.account_id, SECRET, CredentialKind.SECRET, True)
    return Finding(
        finding_id="f-1",
        rule=Rule.SECRET_EXPOSED_TO_LEAVER,
        severity=Rule.SECRET_EXPOSED_TO_LEAVER.severity,
        status=FindingStatus.OPEN,
        account=acct,
        person=leaver("E2", START - timedelta(days=3), name=NAME),
        credential=cred,
        first_seen=START,
        due_at=START,
        reason="read and never rotated",
    )


def _slack_controls(text: str) -> list[str]:
    """What Slack reads as control sequences in a message text: everything between < and >."""
    return re.findall(r"<([^<>]*)>", text)


def _slack_shown(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_names_and_paths_in_a_notification_text_are_escaped_for_slack_never_pings_or_links() -> None:
    result = RunResult("r1", START, START + timedelta(seconds=5), (), (_finding(),))
    messages = run_messages(result, "audit")
    assert {m.kind for m in messages} == {"new_findings", "rotate_tasks"}
    notifier = Notifier(NotificationConfig(urls=("https://hooks.example.test/T0/B0/x",)), {})
    try:
        rows = notifier.rows(messages, "run:r1", START)
    finally:
        notifier.close()
    payloads = {p["kind"]: p for p in (json.loads(n.payload_json) for n in rows)}
    for kind, payload in payloads.items():
        text = payload["text"]
        assert _slack_controls(text) == [], (kind, text)
        # The reader still sees every value as it is.
        shown = _slack_shown(text)
        assert SECRET in shown, kind
    assert f"mallory {LINK}" in _slack_shown(payloads["new_findings"]["text"])
    assert f"({NAME})" in _slack_shown(payloads["rotate_tasks"]["text"])
    # The machine-readable fields are data, not chat text: as they are.
    (task,) = payloads["rotate_tasks"]["rotate_tasks"]
    assert SECRET in json.dumps(task, ensure_ascii=False)
