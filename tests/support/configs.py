"""Build Config objects in code for core tests (sources injected as fakes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from offboard_audit.config import Config, build_config

HR_CSV_HEADER = "employee_id,email,name,status,termination_date,aliases\n"


def config_with(
    tmp_path: Path,
    account_sources: list[str] = ("sys",),  # type: ignore[assignment]
    policy: dict[str, Any] | None = None,
    hr_names: list[str] = ("hr",),  # type: ignore[assignment]
) -> Config:
    """A config whose sources are placeholders (type hr_csv) to be replaced by injected fakes.

    The account sources use the ``hr_csv`` plugin only as a stand-in: tests inject
    ``FakeAccountSource`` instances by name, so no plugin factory is ever called for them.
    """
    hr_file = tmp_path / "hr.csv"
    if not hr_file.exists():
        hr_file.write_text(HR_CSV_HEADER + "X1,x1@example.com,X,active,,\n")
    sources: list[dict[str, Any]] = [{"name": n, "type": "hr_csv", "path": str(hr_file)} for n in hr_names]
    raw: dict[str, Any] = {
        "database": {"url": f"sqlite:///{tmp_path / 'test.db'}"},
        "policy": policy or {},
        "sources": sources,
    }
    config = build_config(raw, base_dir=tmp_path, env={})
    # Account sources: same placeholder plugin, but marked as account sources.
    from dataclasses import replace

    from offboard_audit.core.options import SourceOptions
    from offboard_audit.core.protocols import ConnectorPlugin, MatchSpec, SourceKind

    def _never(_o: Any, _c: Any) -> Any:
        raise AssertionError("fake sources are injected; the factory must not be called")

    plugin = ConnectorPlugin(
        type_name="fake",
        kind=SourceKind.ACCOUNTS,
        system="fake",
        make_source=_never,
        match=MatchSpec(employee_id_attributes=("employeeNumber",), email_attributes=("mail",)),
    )
    from offboard_audit.config import SourceConfig

    extra = tuple(
        SourceConfig(
            name=n, type="fake", plugin=plugin, options=SourceOptions({"name": n}), match=plugin.match
        )
        for n in account_sources
    )
    return replace(config, sources=config.sources + extra)
