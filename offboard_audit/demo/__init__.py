"""The embedded sample organisation behind ``offboard-audit demo``.

A bundled HR file (active, terminated, future-dated and rehired people) plus each
connector's in-process fake (LDAP via ldap3's mock, AWS via moto, Google Cloud via local
fakes). Nothing touches the network and no config file is needed.

moto is not a dependency of a production install: it comes with the ``demo`` extra
(``pip install 'offboard-audit[demo]'``). Without it the demo stops with
:class:`DemoUnavailable`, whose message says exactly that.
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

# Python packages a connector's demo part may need that a production install leaves out, and
# the extra that brings them.
DEMO_EXTRAS = {"moto": "demo"}


class DemoUnavailable(Exception):
    """The demo cannot run in this installation; the message says what to install."""


def install_hint(module: str) -> str:
    extra = DEMO_EXTRAS.get(module.split(".")[0])
    if extra is None:
        return f"the demo needs the Python package {module!r}, which is not installed"
    return (
        f"the demo needs {module.split('.')[0]}, which production installs leave out: "
        f"pip install 'offboard-audit[{extra}]' (from a clone of the repository: pip install -e '.[{extra}]')"
    )


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
            try:
                part = plugin.demo(people, now)
            except ModuleNotFoundError as exc:
                if exc.name is None or exc.name.split(".")[0] not in DEMO_EXTRAS:
                    raise
                raise DemoUnavailable(install_hint(exc.name)) from exc
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
