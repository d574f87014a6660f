"""The ``vault`` source's config table: every mistake names its key (exit 2), secrets come from
the environment only and never show in a repr."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.vault.settings import parse_settings
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.options import SourceOptions

BASE = {"name": "bao", "type": "vault", "url": "https://bao.example.org:8200", "token_env": "T"}


def parse(env: dict[str, str] | None = None, **raw: Any) -> Any:
    return parse_settings(SourceOptions({**BASE, **raw}, "sources[1]"), env)


@pytest.mark.parametrize(
    ("raw", "key", "text"),
    [
        ({"url": "bao.example.org"}, "url", "http(s) URL"),
        ({"role_id": "r", "secret_id_env": "S"}, "token_env", "not both"),
        ({"token_env": None, "role_id": "r"}, "secret_id_env", "is required"),
        ({"kv_mounts": ["secret"], "transit_mounts": ["secret"]}, "transit_mounts", "kv_mounts too"),
        ({"signing_metadata": ["purpose"]}, "signing_metadata", "key=value"),
        ({"nope": 1}, "nope", "unknown option"),
    ],
)
def test_mistakes_name_their_key(raw: dict[str, Any], key: str, text: str) -> None:
    cleaned = {k: v for k, v in {**BASE, **raw}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        parse_settings(SourceOptions(cleaned, "sources[1]"), None)
    assert info.value.key == f"sources[1].{key}" and text in str(info.value)


def test_the_token_comes_from_the_environment_and_stays_out_of_reprs() -> None:
    with pytest.raises(ConfigError, match="environment variable T is not set"):
        parse({})
    settings = parse({"T": "s.very-secret"})
    assert settings.token == "s.very-secret" and "very-secret" not in repr(settings)
    approle = parse_settings(
        SourceOptions(
            {**{k: v for k, v in BASE.items() if k != "token_env"}, "role_id": "r", "secret_id_env": "S"}
        ),
        {"S": "sid-secret"},
    )
    assert approle.secret_id == "sid-secret" and "sid-secret" not in repr(approle)


def test_defaults_and_scopes() -> None:
    s = parse(None, approle_mounts=["auth/ci-approle"], namespace="team-a/")
    assert s.mounts == ("secret", "transit", "pki", "auth/ci-approle")
    assert s.engines["auth/ci-approle"] == "approle" and s.scope == "team-a"
    assert s.is_protected("BreakGlass") is False and parse(
        None, protected_entities=["breakglass"]
    ).is_protected("BreakGlass")
