from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from connectors.hr_records import make_csv_source, make_json_source
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.matching import match_all
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import MatchSpec, SourceContext
from offboard_audit.core.records import PersonStatus
from tests.support.fakes import account

HEADER = "employee_id,email,name,status,termination_date,aliases"


def csv_source(tmp_path: Path, text: str, encoding: str = "utf-8", **opts):
    f = tmp_path / "hr.csv"
    f.write_bytes(text.encode(encoding))
    options = SourceOptions({"name": "hr", "type": "hr_csv", "path": str(f), **opts}, "sources[0]")
    return make_csv_source(options, SourceContext(base_dir=tmp_path))


def test_bom_crlf_whitespace_and_mixed_case_are_handled(tmp_path: Path):
    text = (
        "\ufeff"
        + HEADER
        + "\r\n E1 , Alice@Example.COM ,Alice, Active ,,\r\nE2,bob@example.com,Bob,TERMINATED,2026-09-30,bob;bleaver\r\n"
    )
    read = csv_source(tmp_path, text).read_people()
    alice, bob = read.people
    assert read.problems == ()
    assert (
        alice.employee_id == "E1"
        and alice.email == "alice@example.com"
        and alice.status is PersonStatus.ACTIVE
    )
    assert bob.terminated_at == datetime(2026, 9, 30, tzinfo=UTC) and bob.aliases == ("bob", "bleaver")


def test_rehire_clears_the_termination_and_future_dates_pass_through(tmp_path: Path):
    text = f"{HEADER}\nE5,erin@example.com,Erin,active,2025-12-01,\nE4,dave@example.com,Dave,terminated,2031-03-31T09:00:00-05:00,\n"
    erin, dave = csv_source(tmp_path, text).read_people().people
    assert erin.terminated_at is None and erin.status is PersonStatus.ACTIVE
    assert dave.terminated_at == datetime(2031, 3, 31, 14, tzinfo=UTC)
    assert not dave.is_departed(datetime(2026, 11, 27, tzinfo=UTC))


def test_bad_rows_are_reported_with_line_numbers_and_skipped(tmp_path: Path):
    text = "\n".join(
        [
            HEADER,
            "E1,alice@example.com,Alice,active,,",
            ",,Nobody,active,,",
            "E3,carol@example.com,Carol,terminated,30/06/2026,",
            "E4,dave@example.com,Dave,retired,,",
            "E5,erin@example.com,Erin,terminated,,",
            "E6,f@example.com,F,active,,",
            "E6,f2@example.com,F2,active,,",
            "E1,alice@example.com,Alice,active,,",
        ]
    )
    read = csv_source(tmp_path, text).read_people()
    assert [p.employee_id for p in read.people] == ["E1"]
    lines = {p.line: p.message for p in read.problems}
    assert set(lines) == {3, 4, 5, 6, 8}
    assert "neither employee_id nor email" in lines[3]
    assert "not an ISO date" in lines[4]
    assert "unknown status 'retired'" in lines[5]
    assert "termination_date is empty" in lines[6]
    assert "also on line 7" in lines[8]


def test_missing_required_column_is_a_config_error_naming_it(tmp_path: Path):
    with pytest.raises(ConfigError, match="'termination_date'"):
        csv_source(tmp_path, "employee_id,email,name,status\nE1,a@x,A,active\n").read_people()


@pytest.mark.parametrize(
    "header",
    [
        "employee_id;email;name;status;termination_date",
        '\n"employee_id"; "email";name;status;termination_date;aliases',  # blank line, quotes, spaces
    ],
)
def test_a_semicolon_separated_export_fails_saying_so_not_to_map_columns(tmp_path: Path, header: str):
    text = header + "\nE1;a@x.org;Alice;terminated;2026-01-15\n"
    with pytest.raises(ConfigError) as err:
        csv_source(tmp_path, text).read_people()
    assert str(err.value) == (
        f"sources.hr.path: HR file {tmp_path / 'hr.csv'} looks separated by ';', but hr_csv reads ',' "
        "— export it comma-separated"
    )


def test_a_semicolon_header_naming_other_columns_is_the_missing_column_error(tmp_path: Path):
    # Split by ';' it still lacks termination_date: nothing says the separator is the problem.
    text = "employee_id;email;name;status\nE1;a@x.org;Alice;active\n"
    with pytest.raises(ConfigError) as err:
        csv_source(tmp_path, text).read_people()
    assert "map other header names with the source's `columns` table" in str(err.value)
    assert "';'" not in str(err.value)


def test_a_semicolon_in_a_comma_separated_header_is_read_as_usual(tmp_path: Path):
    text = "employee_id,email,name,status,termination_date,notes;misc\nE1,a@x.org,Alice,active,,x\n"
    (p,) = csv_source(tmp_path, text).read_people().people
    assert p.employee_id == "E1"


def test_column_mapping_and_status_map_read_workday_style_exports(tmp_path: Path):
    text = "Worker ID,Work Email,Legal Name,Worker Status,Termination Date\nW1,a@x.com,A,Terminated - Voluntary,2026-01-02\n"
    source = csv_source(
        tmp_path,
        text,
        columns={
            "employee_id": "Worker ID",
            "email": "Work Email",
            "name": "Legal Name",
            "status": "Worker Status",
            "termination_date": "Termination Date",
        },
        status_map={"Terminated - Voluntary": "terminated"},
    )
    (p,) = source.read_people().people
    assert p.status is PersonStatus.TERMINATED and p.employee_id == "W1"


@pytest.mark.parametrize("content", ["", HEADER + "\n", HEADER + "\n,,,,,\n"])
def test_empty_hr_file_is_a_failed_source_not_an_empty_workforce(tmp_path: Path, content: str):
    with pytest.raises(SourceError):
        csv_source(tmp_path, content).read_people()


def test_all_rows_bad_is_a_failed_source(tmp_path: Path):
    with pytest.raises(SourceError, match="2 bad rows"):
        csv_source(tmp_path, HEADER + "\nE1,a@x,A,weird,,\nE2,b@x,B,weird,,\n").read_people()


def test_unreadable_file_is_a_failed_source(tmp_path: Path):
    options = SourceOptions({"name": "hr", "type": "hr_csv", "path": str(tmp_path / "missing.csv")})
    with pytest.raises(SourceError, match="cannot read"):
        make_csv_source(options, SourceContext(base_dir=tmp_path)).read_people()


def test_non_utf8_file_is_a_failed_source(tmp_path: Path):
    with pytest.raises(SourceError):
        csv_source(tmp_path, HEADER + "\nE1,a@x,Zoë,active,,\n", encoding="utf-16").read_people()


def test_json_file_with_records_key(tmp_path: Path):
    f = tmp_path / "hr.json"
    f.write_text(
        json.dumps(
            {
                "employees": [
                    {
                        "employee_id": "E1",
                        "email": "a@x.com",
                        "name": "A",
                        "status": "active",
                        "termination_date": None,
                    },
                    {
                        "employee_id": "E2",
                        "email": "b@x.com",
                        "name": "B",
                        "status": "terminated",
                        "termination_date": "2026-02-03T04:05:06Z",
                        "aliases": ["bee"],
                    },
                    {
                        "employee_id": "E3",
                        "email": "c@x.com",
                        "name": "C",
                        "status": "gone",
                        "termination_date": "",
                    },
                ]
            }
        )
    )
    options = SourceOptions({"name": "hrj", "type": "hr_json", "path": str(f)})
    read = make_json_source(options, SourceContext(base_dir=tmp_path)).read_people()
    assert [p.employee_id for p in read.people] == ["E1", "E2"]
    assert read.people[1].aliases == ("bee",)
    assert read.problems[0].line == 3


class _Handler(BaseHTTPRequestHandler):
    body = b"[]"
    status = 200
    seen_auth: list[str] = []

    def do_GET(self) -> None:
        type(self).seen_auth.append(self.headers.get("Authorization", ""))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hr_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url_source(tmp_path: Path, server, env):
    url = f"http://127.0.0.1:{server.server_address[1]}/people"
    options = SourceOptions({"name": "hrj", "type": "hr_json", "url": url, "token_env": "HR_TOKEN"})
    return make_json_source(options, SourceContext(base_dir=tmp_path, env=env))


def test_json_url_sends_the_bearer_token_from_the_environment(tmp_path: Path, hr_server):
    _Handler.status = 200
    _Handler.seen_auth = []
    _Handler.body = json.dumps(
        [{"employee_id": "E1", "email": "a@x.com", "name": "A", "status": "active", "termination_date": ""}]
    ).encode()
    read = _url_source(tmp_path, hr_server, {"HR_TOKEN": "s3cret"}).read_people()
    assert [p.employee_id for p in read.people] == ["E1"]
    assert _Handler.seen_auth == ["Bearer s3cret"]


def test_json_url_http_error_is_a_failed_source(tmp_path: Path, hr_server):
    _Handler.status = 503
    with pytest.raises(SourceError, match="HTTP 503"):
        _url_source(tmp_path, hr_server, {"HR_TOKEN": "t"}).read_people()


def test_json_url_missing_token_env_is_a_config_error(tmp_path: Path, hr_server):
    with pytest.raises(ConfigError, match="HR_TOKEN is not set"):
        _url_source(tmp_path, hr_server, {})


def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path):
    options = SourceOptions({"name": "hrj", "type": "hr_json", "url": "http://hr.example.com/people"})
    with pytest.raises(ConfigError, match="https"):
        make_json_source(options, SourceContext(base_dir=tmp_path))


def test_hr_identifiers_are_read_in_one_unicode_form_without_invisible_characters(tmp_path: Path):
    # A zero-width space pasted into a new hire's email, or an accent typed decomposed (NFD), made
    # the address another string: the account of a reused address matched only the leaver, whose
    # HR record keeps it, and the new hire's credentials were taken for the leaver's.
    nfd = "andre\u0301@example.com"  # "andré" decomposed
    text = (
        f"{HEADER}\n"
        "E1,alice@example.com,Alice Old,terminated,2026-01-31,\n"
        "E5,alice\u200b@example.com,Alice New,active,,\n"
        "E2,andr\u00e9@example.com,Andre Old,terminated,2026-01-31,\n"
        f"E6,{nfd},Andre New,active,,\ufeffa\u200d\u00e9@example.com\n"
        "E7\u2060,eve@example.com,Eve,active,,\n"
    )
    people = csv_source(tmp_path, text).read_people().people
    by_id = {p.employee_id: p for p in people}
    assert set(by_id) == {"E1", "E5", "E2", "E6", "E7"}
    assert by_id["E5"].email == "alice@example.com"
    assert by_id["E6"].email == "andr\u00e9@example.com" and by_id["E6"].aliases == ("a\u00e9@example.com",)
    spec = MatchSpec()
    accounts = [
        account("alice", emails=("alice@example.com",)),
        account("andre", emails=("andr\u00e9@example.com",)),
    ]
    links = match_all(accounts, {"sys": spec}, people, ("alias", "email_local"))
    assert [sorted(p.employee_id for p in link.people) for link in links] == [["E1", "E5"], ["E2", "E6"]]
