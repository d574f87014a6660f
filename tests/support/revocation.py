"""The in-process revocation test environment: the fake JSON-file connector, SQLite, the real
pipeline and the real engine (shared by the revocation integration tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from offboard_audit.config import Config, load_config
from offboard_audit.config.registry import EXTRA_SOURCES_ENV
from offboard_audit.core.protocols import Revoker, SourceContext
from offboard_audit.core.runs import RunResult
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.revocation import RevocationEngine
from offboard_audit.storage.store import Store
from tests.support.fake_connector import PLUGIN_REF, FakeWorld, standard_world

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Env:
    world: FakeWorld
    config: Config
    store: Store

    def audit(self, now: datetime = NOW) -> RunResult:
        return Pipeline(self.config, self.store, SourceContext(base_dir=self.config.base_dir)).run(now)

    def engine(
        self,
        now: datetime = NOW,
        actor: str = "test",
        revoker: Revoker | None = None,
        *,
        lock_timeout: float = 30.0,
        reporter: Callable[[str], None] | None = None,
    ) -> RevocationEngine:
        """The engine on this world at ``now``; ``revoker`` replaces the fake connector's own
        (hooks, faults); ``reporter`` gets its progress lines."""
        return RevocationEngine(
            self.config,
            self.store,
            SourceContext(base_dir=self.config.base_dir),
            actor,
            lock_timeout=lock_timeout,
            reporter=reporter,
            clock=lambda: now,
            revokers={"fake": revoker} if revoker is not None else None,
        )

    def reload(self, policy: dict[str, Any]) -> None:
        self.world.write_config({"protected": ["fake:breakglass"], **policy})
        self.config = load_config(self.world.config_path, env={})

    def finding_id(self, credential_id: str) -> str:
        for f in self.store.list_findings(None):
            if f.credential is not None and f.credential.credential_id == credential_id:
                return f.finding_id
        raise KeyError(credential_id)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv(EXTRA_SOURCES_ENV, PLUGIN_REF)
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    config = load_config(world.config_path, env={})
    store = Store.open(config.database_url)
    yield Env(world, config, store)
    store.engine.dispose()
