"""A lone UTF-16 surrogate in an HR value is a bad row, never a failed audit.

JSON may carry one (``"\\ud800"``); ``json.loads`` hands it over as a one-character string, but it
is not text: no database stores it as UTF-8 and no terminal prints it. Kept, it crashed every
audit when the people were saved (``UnicodeEncodeError``, on SQLite and PostgreSQL alike), so one
bad HR record stopped everybody's offboarding. Now that row is a row problem, the person's last
good record is kept, and everybody else is audited.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from connectors.hr_records import make_json_source
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import PersonStatus, Rule
from offboard_audit.core.runs import SourceStatus
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, account, credential

NOW = T0 + timedelta(days=3)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


def hr_file(tmp_path: Path, records: list[dict[str, str]]) -> Path:
    path = tmp_path / "hr.json"
    # ensure_ascii writes the surrogate as the escape "\ud800", as an HR system's JSON would.
    path.write_text(json.dumps(records), encoding="ascii")
    return path


def person_row(eid: str, email: str, name: str, status: str = "terminated") -> dict[str, str]:
    return {
        "employee_id": eid,
        "email": email,
        "name": name,
        "status": status,
        "termination_date": "2026-01-01" if status == "terminated" else "",
    }


@pytest.mark.parametrize("field", ["name", "email", "employee_id"])
def test_a_lone_surrogate_in_one_hr_record_is_a_row_problem_and_everybody_else_is_audited(
    tmp_path, store, field
):
    bad = person_row("E1", "alice@example.com", "Alice")
    bad[field] = bad[field] + "\ud800"
    path = hr_file(tmp_path, [bad, person_row("E2", "bob@example.com", "Bob")])
    options = SourceOptions({"name": "hr", "type": "hr_json", "path": str(path)}, "sources[1]")
    hr = make_json_source(options, SourceContext(base_dir=tmp_path))
    bob = account("bob", emails=("bob@example.com",))
    sys = FakeAccountSource(accounts=[bob], credentials=[credential(bob, "K-bob")])
    cfg = config_with(tmp_path, account_sources=[sys.name])

    result = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, "sys": sys}).run(NOW)

    statuses = {s.name: s for s in result.sources}
    assert statuses["sys"].status is SourceStatus.OK
    assert any("surrogate" in w for w in statuses["hr"].warnings), statuses["hr"]
    assert [(p.employee_id, p.status) for p in store.load_people()] == [("E2", PersonStatus.TERMINATED)]
    assert {(f.account.account_id, f.rule) for f in store.list_findings(["open"])} == {
        ("bob", Rule.CREDENTIAL_AFTER_TERMINATION)
    }
