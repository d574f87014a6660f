from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.config import load_config, locate_keys, parse_config
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.options import parse_duration

GOOD = """\
[database]
url = "sqlite:///audit.db"

[policy]
grace_period = "4h"
max_revocations_per_run = 10
protected = ["aws:root"]

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "hr2"
type = "hr_json"
path = "hr.json"
"""


def test_good_config_parses_with_relative_paths_resolved(tmp_path: Path):
    cfg_file = tmp_path / "offboard-audit.toml"
    cfg_file.write_text(GOOD)
    cfg = load_config(cfg_file, env={})
    assert cfg.policy.grace_period == timedelta(hours=4)
    assert cfg.policy.max_people_per_run == 10  # the old key name is still read
    assert cfg.database_url == f"sqlite:///{tmp_path.resolve() / 'audit.db'}"
    assert [s.name for s in cfg.hr_sources] == ["hr", "hr2"]
    assert cfg.sources[0].options.file_path("path") == tmp_path.resolve() / "hr.csv"


def test_db_override_and_env_beat_the_file(tmp_path: Path):
    assert (
        parse_config(GOOD, tmp_path / "c.toml", db_override="sqlite://", env={}).database_url == "sqlite://"
    )
    assert parse_config(
        GOOD, tmp_path / "c.toml", env={"OFFBOARD_AUDIT_DB": "postgresql+psycopg://x/y"}
    ).database_url == ("postgresql+psycopg://x/y")


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    return info.value


def test_unknown_source_type_names_key_and_line():
    err = _error(GOOD.replace('type = "hr_json"', 'type = "workday"'))
    assert err.key == "sources[1].type" and err.line == 16
    assert "unknown source type 'workday'" in str(err) and "hr_csv" in str(err)


def test_missing_required_key_is_named():
    err = _error(GOOD.replace('type = "hr_json"\n', ""))
    assert err.key == "sources[1].type" and "required" in str(err)


def test_bad_duration_names_key_and_line():
    err = _error(GOOD.replace('"4h"', '"four hours"'))
    assert err.key == "policy.grace_period" and err.line == 5
    assert "not a duration" in str(err)


def test_unknown_keys_and_sections_are_rejected():
    assert _error(GOOD.replace("max_revocations_per_run", "max_revocation")).key == "policy.max_revocation"
    assert _error(GOOD + "\n[polcy]\nx = 1\n").key == "polcy"


def test_out_of_range_share_and_bad_cron_are_rejected():
    assert (
        _error(GOOD.replace("[policy]\n", "[policy]\nmax_new_terminations = 5\n")).key
        == "policy.max_new_terminations"
    )
    assert _error(GOOD + '\n[schedule]\naudit = "every 5 minutes"\n').key == "schedule.audit"
    # Checked field by field when the config is read, not first when the daemon starts.
    err = _error(GOOD + '\n[schedule]\nhr_refresh = "0 3 * * 8"\n')
    assert err.key == "schedule.hr_refresh"
    assert "not a valid cron expression: day of week: 8 is out of range 0-7" in str(err)


def test_duplicate_source_names_are_rejected():
    err = _error(GOOD.replace('name = "hr2"', 'name = "hr"'))
    assert err.key == "sources[1].name" and "duplicate" in str(err)


def test_invalid_toml_reports_its_line():
    err = _error("[policy]\ngrace_period = \n")
    assert err.line == 2


def test_missing_file_suggests_demo(tmp_path: Path):
    with pytest.raises(ConfigError, match="offboard-audit demo"):
        load_config(tmp_path / "nope.toml", env={})


def test_durations():
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    assert parse_duration("0h") == timedelta(0)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2w") == timedelta(weeks=2)
    for bad in ("", "5", "h", "5 parsecs", "1d-2h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_locate_keys_understands_arrays_of_tables_and_subtables():
    text = '[[sources]]\nname = "a"\n[sources.match]\nemail = ["mail"]\n[[sources]]\nname = "b"\n'
    lines = locate_keys(text)
    assert lines["sources[0].name"] == 2
    assert lines["sources[0].match.email"] == 4
    assert lines["sources[1].name"] == 6


def test_webhook_job_lease_is_a_positive_duration():
    assert parse_config(GOOD + '\n[webhook]\njob_lease = "2s"\n', env={}).webhook.job_lease == timedelta(
        seconds=2
    )
    assert _error(GOOD + '\n[webhook]\njob_lease = "0s"\n').key == "webhook.job_lease"


def test_a_schedule_built_in_code_refuses_an_unknown_time_zone_as_the_file_reader_does():
    from offboard_audit.config.sections import ScheduleConfig

    with pytest.raises(ValueError, match="unknown time zone 'Europe/Atlantis'"):
        ScheduleConfig(timezone="Europe/Atlantis")
    with pytest.raises(ConfigError, match="unknown time zone 'Europe/Atlantis'") as caught:
        parse_config(GOOD + '\n[schedule]\ntimezone = "Europe/Atlantis"\n')
    assert "schedule.timezone" in str(caught.value)
    assert str(ScheduleConfig(timezone="Europe/Berlin").zone) == "Europe/Berlin"


def test_a_protected_word_without_a_colon_that_names_no_source_is_refused_with_its_key_and_line():
    # "alice" selected nothing (a bare word is read as a source name) and plan went on to revoke
    # alice's keys, with no word from config check.
    err = _error(GOOD.replace('protected = ["aws:root"]', 'protected = ["aws:root", "alice"]'))
    assert err.key == "policy.protected" and err.line == 7
    assert "'alice' names no configured source or system" in str(err)
    assert "PREFIX[:SCOPE]:ACCOUNT[:CREDENTIAL]" in str(err)
    # A glob without a colon is no source name either (a bare word is compared as it is).
    assert _error(GOOD.replace('"aws:root"', '"hr*"')).key == "policy.protected"


def test_a_protected_source_or_system_name_alone_is_accepted_only_when_a_source_has_it():
    text = GOOD.replace('["aws:root"]', '["aws:root", "HR2", "hr", "aws-main", "aws_iam", "aws"]')
    text += '\n[[sources]]\nname = "aws-main"\ntype = "aws_iam"\n'
    assert parse_config(text, env={}).policy.protected[1:] == ("HR2", "hr", "aws-main", "aws_iam", "aws")
    # A system no source of this file has is a word that selects nothing.
    assert "'gcp' names no configured source" in str(_error(GOOD.replace('"aws:root"', '"gcp"')))


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:0", "127.0.0.1:+80"])
def test_webhook_listen_needs_a_port_a_socket_can_bind(listen: str):
    # A socket binds ports 1-65535 (0 would be a random one); 99999 used to pass until bind time.
    err = _error(GOOD + f'\n[webhook]\nlisten = "{listen}"\n')
    assert err.key == "webhook.listen" and err.line == GOOD.count("\n") + 3
    assert f"must be HOST:PORT with a port from 1 to 65535, got {listen!r}" in str(err)
    from offboard_audit.config.sections import WebhookConfig

    with pytest.raises(ValueError, match="a port from 1 to 65535"):
        WebhookConfig(listen=listen)  # built in code: refused the same way
    # The edges of the range, and an IPv6 host, are taken.
    webhook = parse_config(GOOD + '\n[webhook]\nlisten = "[::1]:65535"\n', env={}).webhook
    assert webhook.host_port == ("::1", 65535)
    assert parse_config(GOOD + '\n[webhook]\nlisten = ":1"\n', env={}).webhook.host_port == ("127.0.0.1", 1)


def test_a_database_other_than_sqlite_or_postgresql_is_refused_naming_where_it_came_from():
    # mysql:// was accepted; every command then failed with "internal error ... this is a bug".
    err = _error(GOOD.replace("sqlite:///audit.db", "mysql://app:s3cret@db.example.org/audit"))
    assert err.key == "database.url" and err.line == 2
    assert "mysql://app:***@db.example.org/audit is a mysql database, which is not supported" in str(err)
    assert "s3cret" not in str(err)
    with pytest.raises(ConfigError) as from_env:
        parse_config(GOOD, env={"OFFBOARD_AUDIT_DB": "oracle+cx_oracle://x/y"})
    assert from_env.value.key == "--db (or $OFFBOARD_AUDIT_DB)" and "oracle database" in str(from_env.value)
    with pytest.raises(ConfigError, match=r"audit\.db is not a database URL"):
        parse_config(GOOD, db_override="audit.db", env={})
    for url in ("sqlite://", "postgresql://x/y", "postgresql+psycopg://x/y"):
        assert parse_config(GOOD, db_override=url, env={}).database_url == url


def test_notification_urls_must_be_http_or_https_and_are_named_by_position_never_shown():
    # The notifier (httpx) posts over http(s) only: ftp:// was accepted, then retried and given up.
    text = (
        GOOD
        + '\n[notifications]\nurls = ["https://hooks.example.org/T/tok", "ftp://files.example.org/tok"]\n'
    )
    err = _error(text)
    assert err.key == "notifications.urls" and err.line == GOOD.count("\n") + 3
    assert "URL 2: must start with http:// or https:// (it has ftp://)" in str(err)
    assert "tok" not in str(err)
    assert "URL 1: has no host" in str(_error(GOOD + '\n[notifications]\nurls = ["https:///tok"]\n'))
    env_text = GOOD + '\n[notifications]\nurls_env = "NOTIFY_URLS"\n'
    with pytest.raises(ConfigError) as from_env:
        parse_config(env_text, env={"NOTIFY_URLS": "https://a.example.org/tok, hooks.example.org/tok"})
    assert from_env.value.key == "notifications.urls_env" and "tok" not in str(from_env.value)
    assert "$NOTIFY_URLS, URL 2: must start with http:// or https:// (it has no scheme)" in str(
        from_env.value
    )
    good = parse_config(
        env_text.replace("[notifications]", '[notifications]\nurls = ["HTTP://h:8080/x"]'), env={}
    )
    assert good.notifications.urls == ("HTTP://h:8080/x",)


def test_a_notification_url_or_database_url_of_the_wrong_type_is_refused_without_showing_it():
    # A notification URL carries its token and a database URL may carry its password: an error
    # about their type quoted the whole value (to stderr, to CI logs).
    err = _error(GOOD + '\n[notifications]\nurls = ["https://hooks.example.org/T/B/tok-123", 5]\n')
    assert err.key == "notifications.urls" and "tok-123" not in str(err)
    assert "must be a list of strings; item 2 is an integer" in str(err)
    err = _error(GOOD.replace('url = "sqlite:///audit.db"', 'url = ["postgresql://audit:s3cret@db/x"]'))
    assert err.key == "database.url" and "s3cret" not in str(err)
    assert "must be a non-empty string, got a list" in str(err)


def test_max_rehires_is_read_and_must_be_a_share(tmp_path: Path):
    cfg = parse_config(
        GOOD.replace("[policy]\n", "[policy]\nmax_rehires = 0.2\n"), tmp_path / "c.toml", env={}
    )
    assert cfg.policy.max_rehires == 0.2
    assert parse_config(GOOD, tmp_path / "c.toml", env={}).policy.max_rehires == 0.05
    err = _error(GOOD.replace("[policy]\n", "[policy]\nmax_rehires = 1.5\n"))
    assert err.key == "policy.max_rehires" and "between 0 and 1" in str(err)
    assert _error(GOOD.replace("[policy]\n", "[policy]\nmax_rehires = -0.1\n")).key == "policy.max_rehires"
