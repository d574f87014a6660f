"""Mutation holes at the entry of the full reconcile (offboard_audit/engine/pipeline.py):
``run_audit`` (the context, ``only`` and reporter it hands on), ``Pipeline.run`` (no HR source,
``only``, the released breaker it forgets), ``Pipeline.__init__`` (its defaults) and
``Pipeline.selected_account_sources``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.config import Config
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import AccountSource, ConnectorPlugin, MatchSpec, SourceContext, SourceKind
from offboard_audit.core.records import HRRead, PersonStatus
from offboard_audit.engine.pipeline import Pipeline, run_audit
from offboard_audit.storage.store import Store
from tests.support.configs import HR_CSV_HEADER, config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver, person

NOW = T0 + timedelta(days=10)
NO_HR_MESSAGE = "no HR source configured: add a [[sources]] table with type hr_csv or hr_json"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")


# --- run_audit: a pipeline built from the config's own plugins ------------------------------


@dataclass
class Built:
    """What the ``clientfake`` factory was given, per source it built."""

    contexts: dict[str, SourceContext] = field(default_factory=dict)


def client_config(tmp_path: Path, built: Built, names: list[str]) -> Config:
    """HR from a real CSV file (bob, E2, left on 2026-01-10); account sources whose factory
    takes its API client from ``ctx.clients[<source name>]`` (as the demo injects clients)."""
    (tmp_path / "hr.csv").write_text(
        HR_CSV_HEADER + "E1,alice@example.com,Alice,active,,\nE2,bob@example.com,Bob,terminated,2026-01-10,\n"
    )

    def make_source(options: SourceOptions, ctx: SourceContext) -> AccountSource:
        name = options.string("name")
        built.contexts[name] = ctx
        client = ctx.clients[name]
        assert isinstance(client, AccountSource)
        return client

    plugin = ConnectorPlugin(
        type_name="clientfake",
        kind=SourceKind.ACCOUNTS,
        system="fake",
        make_source=make_source,
        match=MatchSpec(employee_id_attributes=("employeeNumber",), email_attributes=("mail",)),
    )
    cfg = config_with(tmp_path, account_sources=names)
    sources = tuple(
        replace(s, type="clientfake", plugin=plugin) if s.kind is SourceKind.ACCOUNTS else s
        for s in cfg.sources
    )
    return replace(cfg, sources=sources)


def bob_system(name: str) -> FakeAccountSource:
    bob = account("bob", source=name, emails=("bob@example.com",))
    return FakeAccountSource(name=name, accounts=[bob], credentials=[credential(bob, f"K-{name}")])


def test_run_audit_hands_the_config_folder_env_and_clients_to_the_source_factories(
    tmp_path: Path, store: Store
) -> None:
    built = Built()
    cfg = client_config(tmp_path, built, ["a"])
    client = bob_system("a")
    env = {"A_TOKEN": "s3cret"}
    result = run_audit(cfg, store, NOW, env=env, clients={"a": client})

    ctx = built.contexts["a"]
    assert ctx.base_dir == tmp_path
    assert dict(ctx.env) == {"A_TOKEN": "s3cret"}
    assert dict(ctx.clients) == {"a": client}
    # The injected client is the one read: bob's key there is a finding of this run.
    assert client.collect_calls == 1
    assert [(f.account.source, f.account.account_id) for f in result.findings] == [("a", "bob")]
    assert [s.name for s in result.sources] == ["hr", "a"]
    assert result.started_at == NOW


def test_run_audit_reads_only_the_account_sources_named_in_only(tmp_path: Path, store: Store) -> None:
    built = Built()
    cfg = client_config(tmp_path, built, ["a", "b"])
    a, b = bob_system("a"), bob_system("b")
    result = run_audit(cfg, store, NOW, only=["b"], clients={"a": a, "b": b})

    assert sorted(built.contexts) == ["b"]  # "a" is not even built
    assert (a.collect_calls, b.collect_calls) == (0, 1)
    assert [s.name for s in result.sources] == ["hr", "b"]
    assert [(f.account.source, f.account.account_id) for f in result.findings] == [("b", "bob")]


def test_run_audit_reports_its_progress_to_the_reporter(tmp_path: Path, store: Store) -> None:
    built = Built()
    cfg = client_config(tmp_path, built, ["a"])
    lines: list[str] = []
    run_audit(cfg, store, NOW, clients={"a": bob_system("a")}, reporter=lines.append)

    assert "reading HR source hr" in lines
    assert "collecting a (fake)" in lines
    assert "storing results" in lines


def test_run_audit_without_env_or_clients_gives_the_factories_empty_mappings(
    tmp_path: Path, store: Store
) -> None:
    # No clients: the factory cannot find its client, so the source is built by a stand-in
    # that records what it was given and reads nothing.
    seen: list[SourceContext] = []

    def make_source(options: SourceOptions, ctx: SourceContext) -> AccountSource:
        seen.append(ctx)
        return FakeAccountSource(name=options.string("name"))

    cfg = config_with(tmp_path, account_sources=["a"])
    plugin = replace(next(s for s in cfg.sources if s.name == "a").plugin, make_source=make_source)
    cfg = replace(cfg, sources=tuple(replace(s, plugin=plugin) if s.name == "a" else s for s in cfg.sources))
    result = run_audit(cfg, store, NOW)

    (ctx,) = seen
    assert ctx.base_dir == tmp_path
    assert dict(ctx.env) == {}
    assert dict(ctx.clients) == {}
    assert [s.name for s in result.sources] == ["hr", "a"]


# --- Pipeline.run and selected_account_sources ----------------------------------------------


def two_systems(tmp_path: Path, store: Store) -> tuple[Pipeline, FakeAccountSource, FakeAccountSource]:
    hr = FakeHRSource(people=[person("E1", "alice@example.com"), leaver("E2", T0, email="bob@example.com")])
    a, b = bob_system("a"), bob_system("b")
    cfg = config_with(tmp_path, account_sources=["a", "b"])
    p = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, "a": a, "b": b})
    return p, a, b


def test_only_limits_the_run_to_the_named_account_sources(tmp_path: Path, store: Store) -> None:
    p, a, b = two_systems(tmp_path, store)
    result = p.run(NOW, only=["b"])
    assert (a.collect_calls, b.collect_calls) == (0, 1)
    assert [s.name for s in result.sources] == ["hr", "b"]


def test_selected_account_sources_keeps_the_named_account_sources_and_drops_hr(
    tmp_path: Path, store: Store
) -> None:
    p, _, _ = two_systems(tmp_path, store)
    assert [s.name for s in p.selected_account_sources(["hr", "b"])] == ["b"]
    assert [s.name for s in p.selected_account_sources(["b", "a"])] == ["b", "a"]
    assert [s.name for s in p.selected_account_sources([])] == ["a", "b"]


def test_only_naming_hr_and_one_account_source_reads_hr_once_and_that_source(
    tmp_path: Path, store: Store
) -> None:
    p, a, b = two_systems(tmp_path, store)
    result = p.run(NOW, only=["hr", "a"])
    assert (a.collect_calls, b.collect_calls) == (1, 0)
    assert [s.name for s in result.sources] == ["hr", "a"]


def test_a_config_without_hr_source_is_refused_with_the_fix_and_releases_no_breaker(
    tmp_path: Path, store: Store
) -> None:
    cfg = config_with(tmp_path, account_sources=["a"], hr_names=[])
    p = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"a": bob_system("a")})
    with pytest.raises(ConfigError) as raised:
        p.run(NOW)
    assert str(raised.value) == NO_HR_MESSAGE
    assert raised.value.message == NO_HR_MESSAGE
    # Nothing was read, so nothing was released.
    assert p.accepted_breaker is None


@dataclass
class BreakingHRSource(FakeHRSource):
    """An HR source that raises a configuration error (never taken as a failed read)."""

    config_error: str | None = None

    def read_people(self) -> HRRead:
        if self.config_error:
            raise ConfigError(self.config_error)
        return super().read_people()


def test_a_run_that_raises_forgets_the_breaker_an_earlier_accepted_run_released(
    tmp_path: Path, store: Store
) -> None:
    people = [person(f"E{i}", f"u{i}@example.com") for i in range(4)]
    hr = BreakingHRSource(people=list(people))
    sys = FakeAccountSource()
    cfg = config_with(tmp_path, policy={"max_new_terminations": 0.05, "min_breaker_count": 0})
    p = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, "sys": sys})
    assert p.run(NOW).circuit_breaker is None
    # One of four newly terminated (25% > 5%): the breaker trips and the operator accepts it.
    hr.people = [replace(people[0], status=PersonStatus.TERMINATED, terminated_at=NOW), *people[1:]]
    assert p.run(NOW + timedelta(hours=1), accept_hr=True).circuit_breaker is None
    assert p.accepted_breaker is not None and "1 of 4" in p.accepted_breaker

    # The next run stops inside (after it started): it released nothing, and says so.
    hr.config_error = "HR feed options changed under us"
    with pytest.raises(ConfigError, match="HR feed options changed under us"):
        p.run(NOW + timedelta(hours=2))
    assert p.accepted_breaker is None


def test_a_fresh_pipeline_has_released_no_breaker(tmp_path: Path, store: Store) -> None:
    p = Pipeline(config_with(tmp_path), store, SourceContext(base_dir=tmp_path))
    assert p.accepted_breaker is None
