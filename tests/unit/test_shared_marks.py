"""Owner and signing marks read from tags (AWS), labels (GCP) and custom metadata (Vault)."""

from __future__ import annotations

from connectors._shared.marks import is_signing, owner_from


def test_the_owner_is_the_first_non_blank_value_of_the_keys_in_their_order_whatever_their_case() -> None:
    tags = {"Team-Owner": "  ", "OWNER": " Ada.Lovelace@Example.com ", "rotated-by": "bob"}
    assert owner_from(tags, ["team-owner", "owner", "rotated-by"]) == "Ada.Lovelace@Example.com"
    assert owner_from(tags, ["rotated-by", "owner"]) == "bob"


def test_no_owner_when_no_key_has_a_value() -> None:
    assert owner_from({"owner": "", "x": None}, ["owner", "x"]) is None
    assert owner_from({}, ["owner"]) is None


def test_a_signing_mark_matches_key_and_value_in_any_case_and_nothing_else() -> None:
    marks = [("purpose", "signing"), ("signing", "true")]
    assert is_signing({"Purpose": "Signing"}, marks)
    assert is_signing({"SIGNING": "TRUE"}, marks)
    assert not is_signing({"purpose": "encryption", "signing": "false"}, marks)
    assert not is_signing({"purpose": None}, [("purpose", "none")])  # an unset value is no mark
    assert not is_signing({"purpose": "signing"}, [])


def test_a_mark_with_an_empty_value_matches_only_where_that_key_is_set_and_empty() -> None:
    # ("sensitive", "") marks secrets tagged sensitive="" only: a secret without the tag is not
    # a signing key (the AWS translation used to read a missing tag as "").
    marks = [("sensitive", "")]
    assert is_signing({"Sensitive": ""}, marks)
    assert not is_signing({"owner": "ada"}, marks)
