from __future__ import annotations

from pathlib import Path

from offboard_audit.config.reference import config_reference_markdown
from offboard_audit.config.registry import SOURCE_TYPES, plugin_for

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_doc_is_generated_from_the_code():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == config_reference_markdown(), "run: offboard-audit config reference > docs/configuration.md"


def test_every_connector_documents_every_option_it_declares_and_its_permissions():
    doc = config_reference_markdown()
    for type_name in SOURCE_TYPES:
        plugin = plugin_for(type_name)
        for key, text in plugin.options.items():
            assert text.strip(), f"{type_name}.{key} has no help text"
            assert f"`{key}`" in doc
        for action in plugin.revoker_actions.values():
            assert action.permissions, f"{type_name}: action {action.name} declares no permissions"
