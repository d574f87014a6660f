"""SourceOptions' shared readers: "key=value" lists and the refusal of unknown keys.

Every connector's settings (aws_iam, vault, github and the exposure tables) use these, so a
typo in a config file is an error naming the key and its table, never silently ignored.
"""

from __future__ import annotations

import pytest

from offboard_audit.core.errors import ConfigError
from offboard_audit.core.options import SourceOptions


def test_key_value_items_become_casefolded_pairs_with_spaces_trimmed() -> None:
    table = SourceOptions({"tags": ["Purpose = Signing", "team=", "a=b=c"]}, "sources.aws.exposure")
    assert table.pairs("tags") == (("purpose", "signing"), ("team", ""), ("a", "b=c"))


def test_a_missing_key_value_list_gives_the_default_pairs() -> None:
    assert SourceOptions({}).pairs("tags", ("purpose=signing",)) == (("purpose", "signing"),)


@pytest.mark.parametrize("item", ["signing", "=true", "  =x"])
def test_an_item_without_a_key_or_an_equals_sign_is_an_error_naming_the_option(item: str) -> None:
    table = SourceOptions({"tags": ["ok=1", item]}, "sources.aws.exposure")
    with pytest.raises(ConfigError) as raised:
        table.pairs("tags")
    assert raised.value.key == "sources.aws.exposure.tags"
    assert repr(item) in str(raised.value) and "key=value" in str(raised.value)


def test_an_unknown_key_is_refused_naming_it_and_listing_the_known_ones() -> None:
    table = SourceOptions({"url": "x", "tokne_env": "T", "zz": 1}, "sources.vault", lambda _k: 7)
    with pytest.raises(ConfigError) as raised:
        table.only(["url", "token_env"], "vault")
    assert raised.value.key == "sources.vault.tokne_env"  # the first unknown key, sorted
    assert raised.value.line == 7
    assert "unknown option for vault (known: token_env, url)" in str(raised.value)


def test_known_keys_only_pass() -> None:
    SourceOptions({"url": "x"}).only({"url": "help", "token_env": "help"})
