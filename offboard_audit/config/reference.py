"""The configuration reference, generated from the options every part declares.

``offboard-audit config reference`` prints it; docs/configuration.md is this text (a test
keeps the two equal), so a new option cannot ship undocumented.
"""

from __future__ import annotations

from offboard_audit.config import DATABASE_OPTIONS, SOURCE_COMMON_OPTIONS
from offboard_audit.config.registry import SOURCE_TYPES, plugin_for
from offboard_audit.config.sections import (
    AUDIT_OPTIONS,
    MATCHING_OPTIONS,
    NOTIFICATION_OPTIONS,
    POLICY_OPTIONS,
    SCHEDULE_OPTIONS,
    WEBHOOK_OPTIONS,
)


def _table(title: str, options: dict[str, str]) -> list[str]:
    lines = [f"### {title}", "", "| key | meaning |", "|---|---|"]
    for key, text in options.items():
        escaped = text.replace("|", "\\|")
        lines.append(f"| `{key}` | {escaped} |")
    lines.append("")
    return lines


def config_reference_markdown() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the code by `offboard-audit config reference`; do not edit by hand.",
        "Secrets never go in the file: options ending in `_env` name an environment variable.",
        "",
    ]
    out += _table("[database]", DATABASE_OPTIONS)
    out += _table("[audit]", AUDIT_OPTIONS)
    out += _table("[policy]", POLICY_OPTIONS)
    out += _table("[schedule]", SCHEDULE_OPTIONS)
    out += _table("[webhook]", WEBHOOK_OPTIONS)
    out += _table("[notifications]", NOTIFICATION_OPTIONS)
    out += _table("[matching]", MATCHING_OPTIONS)
    out += _table("[[sources]] (every type)", SOURCE_COMMON_OPTIONS)
    for type_name in SOURCE_TYPES:
        plugin = plugin_for(type_name)
        own = {k: v for k, v in plugin.options.items() if k not in SOURCE_COMMON_OPTIONS}
        out += _table(f'[[sources]] type = "{type_name}"', own)
        if plugin.read_permissions:
            out.append("Read permissions: " + ", ".join(f"`{p}`" for p in plugin.read_permissions) + ".")
            out.append("")
        if plugin.revoker_actions:
            out += ["| revoke action | stage | reversible | permissions |", "|---|---|---|---|"]
            for a in plugin.revoker_actions.values():
                perms = ", ".join(f"`{p}`" for p in a.permissions)
                out.append(f"| `{a.name}` | {a.stage.value} | {'yes' if a.reversible else 'no'} | {perms} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"
