"""The embedded sample organisation behind ``offboard-audit demo``.

A bundled HR file (active, terminated, future-dated and rehired people) plus each
connector's in-process fake (LDAP via ldap3's mock, AWS via moto, Google Cloud via local
fakes). Nothing touches the network and no config file is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from offboard_audit.config import Config, build_config
from offboard_audit.config.registry import SOURCE_TYPES, plugin_for
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext, SourceKind
from offboard_audit.core.records import Person


def demo_hr_path() -> Path:
    return Path(str(resources.files("offboard_audit.demo").joinpath("hr.csv")))


def demo_people() -> list[Person]:
    from connectors.hr_records import make_csv_source

    opts = SourceOptions({"name": "hr", "type": "hr_csv", "path": str(demo_hr_path())})
    return list(make_csv_source(opts, SourceContext(base_dir=Path.cwd())).read_people().people)


@dataclass
class DemoOrg:
    config: Config
    ctx: SourceContext
    skipped: list[str] = field(default_factory=list)


@contextmanager
def demo_org(now: datetime, db_url: str, workdir: Path) -> Iterator[DemoOrg]:
    """Build the demo's config and injected clients; stops every fake on exit."""
    people = demo_people()
    sources: list[dict[str, Any]] = [{"name": "hr", "type": "hr_csv", "path": str(demo_hr_path())}]
    clients: dict[str, Any] = {}
    skipped: list[str] = []
    with ExitStack() as stack:
        for type_name in SOURCE_TYPES:
            try:
                plugin = plugin_for(type_name)
            except ImportError as exc:
                skipped.append(f"{type_name}: {exc}")
                continue
            if plugin.kind is not SourceKind.ACCOUNTS or plugin.demo is None:
                continue
            part = plugin.demo(people, now)
            stack.callback(part.close)
            table = dict(part.source)
            sources.append(table)
            if part.client is not None:
                clients[str(table["name"])] = part.client
        raw = {
            "database": {"url": db_url},
            "policy": {
                "grace_period": "0h",
                "max_people_per_run": 50,
                "protected": ["ldap:uid=breakglass,*"],
            },
            "sources": sources,
        }
        try:
            config = build_config(raw, base_dir=workdir, env={})
        except ConfigError as exc:  # a connector's demo table must always be valid
            raise RuntimeError(f"demo configuration is invalid: {exc}") from exc
        yield DemoOrg(config, SourceContext(base_dir=workdir, env={}, clients=clients), skipped)
