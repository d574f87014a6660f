"""The one place where the core learns which connectors exist.

Each line maps a source ``type`` (as written in the config file) to the module attribute
holding its :class:`ConnectorPlugin`. Connectors are imported lazily, so an audit of an
HR file never imports boto3 or the Google client libraries.
"""

from __future__ import annotations

import importlib
import os

from offboard_audit.core.errors import ConfigError
from offboard_audit.core.protocols import ConnectorPlugin

SOURCE_TYPES: dict[str, str] = {
    "hr_csv": "connectors.hr_records:CSV_PLUGIN",
    "hr_json": "connectors.hr_records:JSON_PLUGIN",
    "ldap": "connectors.ldap:PLUGIN",
    "aws_iam": "connectors.aws_iam:PLUGIN",
    "gcp_iam": "connectors.gcp_iam:PLUGIN",
    "vault": "connectors.vault:PLUGIN",
    "github": "connectors.github:PLUGIN",
}


EXTRA_SOURCES_ENV = "OFFBOARD_AUDIT_EXTRA_SOURCES"


def _extra_types() -> dict[str, str]:
    """Out-of-tree connectors: ``OFFBOARD_AUDIT_EXTRA_SOURCES="type=module:ATTR,other=pkg.mod:ATTR"``."""
    extra: dict[str, str] = {}
    for item in os.environ.get(EXTRA_SOURCES_ENV, "").split(","):
        name, sep, target = item.strip().partition("=")
        if sep and name and ":" in target:
            extra[name.strip()] = target.strip()
    return extra


def all_types() -> dict[str, str]:
    return {**SOURCE_TYPES, **_extra_types()}


def plugin_for(type_name: str) -> ConnectorPlugin:
    """Return the plugin for a source type, or raise ``ConfigError`` listing the known ones."""
    types = all_types()
    target = types.get(type_name)
    if target is None:
        known = ", ".join(sorted(types))
        raise ConfigError(f"unknown source type {type_name!r} (known: {known})")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    plugin = getattr(module, attr)
    if not isinstance(plugin, ConnectorPlugin):
        raise TypeError(f"{target} is not a ConnectorPlugin")
    return plugin


def available_types() -> list[str]:
    """Source types whose connector package can be imported here."""
    found = []
    for name in sorted(SOURCE_TYPES):
        try:
            plugin_for(name)
        except ImportError:
            continue
        found.append(name)
    return found
