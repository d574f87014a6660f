"""What a new user meets first (issue 15, "First contact" and "Standard parts"), through the CLI
as a subprocess: --version, shell completion, config init, demo --write-config, global options
after the subcommand, help without type placeholders, the findings table at 80 columns and its
short ids, and the demo without moto.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import pytest
from rich.cells import cell_len

from offboard_audit.config.registry import SOURCE_TYPES
from offboard_audit.core.records import Rule, finding_id
from tests.support.fake_connector import fake_env, standard_world

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, fake: bool = False
) -> subprocess.CompletedProcess[str]:
    base = fake_env() if fake else {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT")}
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT,
    )


# --- --version and shell completion -------------------------------------------------------------


def test_version_prints_the_installed_version_and_exits_0(tmp_path: Path) -> None:
    proc = cli("--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"offboard-audit {version('offboard-audit')}\n"


def test_shell_completion_script_and_completions(tmp_path: Path) -> None:
    script = cli("--show-completion", "bash", cwd=tmp_path)
    assert script.returncode == 0, script.stderr
    assert "_OFFBOARD_AUDIT_COMPLETE=complete_bash" in script.stdout and "offboard-audit" in script.stdout

    def complete(words: str) -> list[str]:
        env = {
            "_OFFBOARD_AUDIT_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        }
        proc = cli(cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert complete("offboard-audit au") == ["audit"]
    assert complete("offboard-audit revoke --ap") == ["--apply"]
    assert set(complete("offboard-audit config ")) == {"check", "init", "reference"}


# --- config init and demo --write-config --------------------------------------------------------


def test_config_init_writes_a_starter_that_config_check_accepts(tmp_path: Path) -> None:
    target = tmp_path / "conf" / "offboard-audit.toml"
    init = cli("config", "init", str(target), cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    text = target.read_text()
    assert "auto_revoke = false" in text and "max_people_per_run = 25" in text
    for type_name in ("hr_csv", "hr_json", "ldap", "aws_iam", "gcp_iam"):
        assert f'# type = "{type_name}"' in text  # every source type, commented out
    check = cli("--config", str(target), "config", "check", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    again = cli("config", "init", str(target), cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert target.read_text() == text


def test_config_init_defaults_to_the_global_config_path(tmp_path: Path) -> None:
    proc = cli("config", "init", "--config", "mine.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mine.toml").exists()


def _uncomment_source(text: str, type_name: str) -> str:
    """The starter with the block of ``type_name`` uncommented (from its ``# [[sources]]`` on)."""
    lines = text.splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if line == "# [[sources]]" and any(f'# type = "{type_name}"' in x for x in lines[i : i + 4])
    )
    end = start
    while end < len(lines) and lines[end].startswith("# "):
        lines[end] = lines[end][2:]
        end += 1
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("type_name", sorted(SOURCE_TYPES))  # every built-in type has a block
def test_each_commented_source_of_the_starter_passes_config_check_once_uncommented(
    tmp_path: Path, type_name: str
) -> None:
    target = tmp_path / "offboard-audit.toml"
    assert cli("config", "init", str(target), cwd=tmp_path).returncode == 0
    target.write_text(_uncomment_source(target.read_text(), type_name))
    # The secrets the starter names come from the environment, as they would for a user.
    check = cli(
        "config",
        "check",
        cwd=tmp_path,
        env={"HR_API_TOKEN": "t", "LDAP_BIND_PASSWORD": "p", "VAULT_TOKEN": "t", "GITHUB_TOKEN": "t"},
    )
    assert check.returncode == 0, check.stderr
    assert type_name in check.stdout  # the permissions table lists the uncommented source


def test_demo_write_config_leaves_a_config_that_audits_the_demo_hr(tmp_path: Path) -> None:
    demo = cli("demo", "--format", "json", "--write-config", "start", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    json.loads(demo.stdout)  # stdout stays the report; the notes go to stderr
    config = tmp_path / "start" / "offboard-audit.toml"
    assert (tmp_path / "start" / "hr.csv").exists() and config.exists()
    assert "--config start/offboard-audit.toml audit" in demo.stderr  # the next step, copyable
    check = cli("--config", str(config), "config", "check", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    audit = cli("--config", str(config), "audit", "--format", "json", cwd=tmp_path)
    assert audit.returncode == 0, audit.stderr
    (hr,) = json.loads(audit.stdout)["run"]["sources"]
    assert hr["status"] == "ok" and hr["counts"]["people"] == 9  # the demo's people
    refused = cli("demo", "--write-config", "start", cwd=tmp_path)
    assert refused.returncode == 2 and "already exists" in refused.stderr


# --- global options after the subcommand ------------------------------------------------------


def _hr_only(root: Path, db: str) -> Path:
    (root / "hr.csv").write_text(
        "employee_id,email,name,status,termination_date\nE1,a@example.com,A,active,\n"
    )
    config = root / "elsewhere.toml"
    config.write_text(
        f'[database]\nurl = "{db}"\n\n[[sources]]\nname = "hr"\ntype = "hr_csv"\npath = "hr.csv"\n'
    )
    return config


def test_config_and_db_work_after_the_subcommand(tmp_path: Path) -> None:
    config = _hr_only(tmp_path, "sqlite:///from-config.db")
    audit = cli("audit", "--format", "json", "--config", str(config), cwd=tmp_path)
    assert audit.returncode == 0, audit.stderr
    assert (tmp_path / "from-config.db").exists()
    other = f"sqlite:///{tmp_path / 'other.db'}"
    again = cli("audit", "--config", str(config), "--db", other, "--format", "json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "other.db").exists()
    # Nested commands too; and the option after the subcommand wins over the one before it.
    listed = cli("--db", "sqlite:///nowhere.db", "exempt", "list", "--db", other, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert not (tmp_path / "nowhere.db").exists()


# --- help shows flags as flags ---------------------------------------------------------------


def _command_paths() -> list[tuple[str, ...]]:
    import importlib

    import typer.main

    from offboard_audit.cli.app import app
    from offboard_audit.cli.loader import COMMANDS

    for modules, _ in COMMANDS.values():
        for m in modules:
            importlib.import_module(f"offboard_audit.cli.{m}")
    paths: list[tuple[str, ...]] = [()]
    for name, command in typer.main.get_group(app).commands.items():
        subs = getattr(command, "commands", None)
        paths += [(name, sub) for sub in subs] if subs else [(name,)]
    return paths


PLACEHOLDER = re.compile(r"<[^>\s]+>|\{\w+\}")


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "root")
def test_help_has_no_type_placeholders(tmp_path: Path, path: Sequence[str]) -> None:
    proc = cli(*path, "--help", cwd=tmp_path, env={"COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    assert f"Usage: offboard-audit {' '.join(path)}".rstrip() in proc.stdout
    assert not PLACEHOLDER.search(proc.stdout), PLACEHOLDER.findall(proc.stdout)
    # A flag is followed by its help text, not by a value placeholder.
    assert re.search(r"--help\s{2,}Show this message", proc.stdout)


def test_flags_and_repeatable_options_read_as_such_in_revoke_help(tmp_path: Path) -> None:
    out = cli("revoke", "--help", cwd=tmp_path, env={"COLUMNS": "100"}).stdout
    assert re.search(r"--apply\s{2,}Really change things", out)
    assert re.search(r"--finding\s+ID\s", out)
    assert "Global options" in out and re.search(r"--config\s+PATH", out)


def _help_texts() -> dict[tuple[str, ...], list[str]]:
    """Every command's own help text and its parameters' help, as the code states them."""
    import typer.main

    from offboard_audit.cli.app import app

    _command_paths()  # imports every command module
    root = typer.main.get_group(app)
    texts: dict[tuple[str, ...], list[str]] = {(): [root.help or ""]}
    for name, command in root.commands.items():
        texts[(name,)] = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        for sub_name, sub in (getattr(command, "commands", None) or {}).items():
            texts[(name, sub_name)] = [sub.help or "", *(getattr(p, "help", None) or "" for p in sub.params)]
    return texts


def test_help_shows_bracketed_text_literally(tmp_path: Path) -> None:
    # Typer reads help as rich markup: a bare "[audit]" was taken for a style tag and dropped
    # ("the MACs ( key_env)"). A "\[" in the code is markup's escape for a literal "[".
    def flat(text: str) -> str:
        return " ".join(text.replace("│", " ").split())

    verify = flat(cli("log", "verify", "--help", cwd=tmp_path, env={"COLUMNS": "250"}).stdout)
    assert "the MACs ([audit] key_env), the anchors ([audit] anchor_file)" in verify
    anchor = flat(cli("log", "anchor", "--help", cwd=tmp_path, env={"COLUMNS": "250"}).stdout)
    assert "head to [audit] anchor_file" in anchor
    bracketed = {
        path: {t.replace("\\[", "[") for text in texts for t in re.findall(r"\\?\[[^\]\n]*\]", text)}
        for path, texts in _help_texts().items()
    }
    bracketed = {path: tokens for path, tokens in bracketed.items() if tokens}
    assert ("log", "verify") in bracketed
    for path, tokens in bracketed.items():
        out = cli(*path, "--help", cwd=tmp_path, env={"COLUMNS": "250"}).stdout
        assert {t for t in tokens if t not in out} == set(), path


# --- the findings table at 80 columns, and its short ids ------------------------------------------


def table_rows(out: str) -> tuple[str, list[str]]:
    """The findings table's header and rows (the lines between the header rule and the summary)."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("id "))
    rows = []
    for line in lines[header + 2 :]:
        if not line.strip() or line.startswith("summary:"):
            break
        rows.append(line)
    return lines[header], rows


def test_demo_findings_fit_80_columns_one_line_each(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    table = cli("--db", db, "demo", cwd=tmp_path, env={"COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    assert all(cell_len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    header, rows = table_rows(table.stdout)
    assert header.split() == ["id", "severity", "person", "system", "account", "credential", "age"]
    stored = json.loads(cli("--db", db, "findings", "--format", "json", cwd=tmp_path).stdout)["findings"]
    assert len(rows) == len(stored)
    for f in stored:  # each finding is one row that starts with a prefix of its id
        assert sum(1 for r in rows if f["id"].startswith(r.split()[0])) == 1


def test_wide_terminals_get_more_columns(tmp_path: Path) -> None:
    out = cli("demo", cwd=tmp_path, env={"COLUMNS": "220"}).stdout
    header, _ = table_rows(out)
    for column in ("rule", "source", "last used", "status"):
        assert column in header


def _short_id(out: str, account: str, kind: str) -> str:
    (row,) = [r for r in table_rows(out)[1] if f" {account} " in r and f" {kind}" in r]
    return row.split()[0]


def test_plan_and_revoke_accept_the_short_id_of_the_findings_table(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    audit = cli("--config", str(world.config_path), "audit", cwd=tmp_path, env={"COLUMNS": "80"}, fake=True)
    assert audit.returncode == 1, audit.stderr
    short = _short_id(audit.stdout, "bob", "access_key")
    assert len(short) < 20
    plan = cli(
        "--config",
        str(world.config_path),
        "plan",
        "--finding",
        short,
        "--format",
        "json",
        cwd=tmp_path,
        fake=True,
    )
    assert plan.returncode == 0, plan.stderr
    actions = json.loads(plan.stdout)["actions"]
    assert [a["credential"]["id"] for a in actions] == ["AK2"]
    revoke = cli(
        "--config", str(world.config_path), "revoke", "--finding", short, "--apply", cwd=tmp_path, fake=True
    )
    assert revoke.returncode == 0, revoke.stderr
    assert world.changes() == [("deactivate_key", "AK2")]


def test_an_ambiguous_short_id_is_a_usage_error(tmp_path: Path) -> None:
    # Two of bob's keys whose finding ids share their first 7 characters (found by search).
    rule = Rule.CREDENTIAL_AFTER_TERMINATION
    first, second = finding_id(rule, "fake", "bob", "AK10276"), finding_id(rule, "fake", "bob", "AK32447")
    assert first[:7] == second[:7] and first[7] != second[7]
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    world.update(
        lambda st: st["credentials"].extend(
            {"account_id": "bob", "id": key, "kind": "access_key"} for key in ("AK10276", "AK32447")
        )
    )
    audit = cli("--config", str(world.config_path), "audit", cwd=tmp_path, env={"COLUMNS": "80"}, fake=True)
    assert audit.returncode == 1, audit.stderr
    shown = [r.split()[0] for r in table_rows(audit.stdout)[1]]
    assert first[:8] in shown and second[:8] in shown  # the table shows ids that tell them apart
    for args in (("plan",), ("revoke", "--apply")):
        proc = cli("--config", str(world.config_path), *args, "--finding", first[:7], cwd=tmp_path, fake=True)
        assert proc.returncode == 2, proc.stderr
        assert "ambiguous" in proc.stderr and first in proc.stderr and second in proc.stderr
    assert world.changes() == []
    too_short = cli(
        "--config", str(world.config_path), "plan", "--finding", first[:3], cwd=tmp_path, fake=True
    )
    assert too_short.returncode == 2 and "too short" in too_short.stderr


# --- the demo without moto ------------------------------------------------------------------------

WITHOUT_MOTO = """
import sys
sys.modules["moto"] = None  # as in a production install, which does not pull moto
from offboard_audit.cli import main
main(sys.argv[1:])
"""


def test_demo_without_moto_says_exactly_what_to_install(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_MOTO, "demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'offboard-audit[demo]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_moto_is_a_demo_extra_and_not_a_dependency() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("moto") for d in project["dependencies"])
    assert any(d.startswith("moto") for d in project["optional-dependencies"]["demo"])
    assert "offboard-audit[demo]" in project["optional-dependencies"]["test"]


# --- README -------------------------------------------------------------------------------------


def test_readme_starts_with_the_demo_extra_and_documents_what_the_cli_does() -> None:
    readme = (REPO / "README.md").read_text()
    first_command = re.search(r"```bash\n(.+)\n", readme)
    assert first_command and first_command.group(1).startswith(
        "pip install -e '.[demo]' && offboard-audit demo"
    )
    # The AWS endpoint example names the options that turn off what such endpoints lack.
    (endpoint_line,) = [
        line for line in readme.splitlines() if "endpoint_url" in line and line.startswith("#")
    ]
    assert "service_specific_credentials" in endpoint_line and "ssh_public_keys" in endpoint_line
    # The JSON example's AWS account id is the user's ARN, as the JSON output gives it.
    assert '"account": {"id": "arn:aws:iam::111111111111:user/bleaver"' in readme
    assert "| 4 |" in readme  # the internal-error exit code is documented


def _runs(db_file: Path) -> int:
    import sqlite3

    with sqlite3.connect(db_file) as conn:
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


def test_demo_never_writes_into_the_database_named_by_the_environment(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'real.db'}")
    audit = cli("--config", str(world.config_path), "audit", cwd=tmp_path, fake=True)
    assert audit.returncode == 1, audit.stderr  # the real database now holds a run and findings
    before = _runs(tmp_path / "real.db")
    demo = cli("demo", cwd=tmp_path, env={"OFFBOARD_AUDIT_DB": f"sqlite:///{tmp_path / 'real.db'}"})
    assert demo.returncode == 0, demo.stderr
    assert "OFFBOARD_AUDIT_DB is ignored" in demo.stderr
    assert "summary:" in demo.stdout
    assert _runs(tmp_path / "real.db") == before


def test_demo_refuses_an_explicit_database_that_already_has_tables(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    first = cli("--db", db, "demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert _runs(tmp_path / "demo.db") == 1
    again = cli("demo", "--db", db, cwd=tmp_path)
    assert again.returncode == 2
    assert "already has tables" in again.stderr and "only into an empty database" in again.stderr
    assert _runs(tmp_path / "demo.db") == 1
