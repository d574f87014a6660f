"""Which other accounts a KMS key policy lets use the key (``key_policy.outside_accounts``): the
statements AWS documents for cross-account use, and those that give no outside account a use."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.aws_iam.exposure.key_policy import outside_accounts

OWN = "111122223333"
OTHER = "444455556666"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(principal: Any, action: Any = "kms:Decrypt", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": action, "Resource": "*", **extra}


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        # The documented cross-account statement, by account root, role and bare account id.
        (allow({"AWS": f"arn:aws:iam::{OTHER}:root"}, ["kms:Encrypt", "kms:Decrypt"]), [OTHER]),
        (allow({"AWS": [f"arn:aws:iam::{OTHER}:role/app", f"arn:aws:iam::{OWN}:root"]}), [OTHER]),
        (allow({"AWS": OTHER}, "kms:*"), [OTHER]),
        (allow({"AWS": OTHER}, "kms:GenerateDataKey*"), [OTHER]),
        (allow({"AWS": OTHER}, "*"), [OTHER]),
        # Everyone, unless a caller-account condition keeps it to accounts named there.
        (allow("*", "kms:Sign"), ["*"]),
        (allow("*", "kms:Decrypt", Condition={"StringEquals": {"kms:CallerAccount": OWN}}), []),
        (
            allow({"AWS": "*"}, "kms:Decrypt", Condition={"StringEquals": {"aws:PrincipalAccount": [OTHER]}}),
            [OTHER],
        ),
        # NotAction allows every use it does not name; NotPrincipal allows everyone else.
        ({"Effect": "Allow", "Principal": {"AWS": OTHER}, "NotAction": "kms:ScheduleKeyDeletion"}, [OTHER]),
        ({"Effect": "Allow", "NotPrincipal": {"AWS": OWN}, "Action": "kms:Decrypt"}, ["*"]),
        # No use of the key: reading its description or public key, a Deny, a service, the own account.
        (allow({"AWS": OTHER}, ["kms:DescribeKey", "kms:GetPublicKey", "kms:Verify"]), []),
        ({"Effect": "Deny", "Principal": {"AWS": OTHER}, "Action": "kms:*"}, []),
        (allow({"Service": "logs.amazonaws.com"}, "kms:*"), []),
        (allow({"AWS": "AROAEXAMPLEDELETEDROLE"}, "kms:*"), []),
        (allow({"AWS": f"arn:aws:iam::{OWN}:root"}, "kms:*"), []),
    ],
)
def test_outside_accounts_of_a_key_policy(statement: dict[str, Any], expected: list[str]) -> None:
    assert outside_accounts(policy(statement), OWN) == expected


def test_a_key_policy_that_is_no_policy_cannot_be_read_as_closed() -> None:
    for bad in ("not json", "[]", '{"Statement": ["x"]}'):
        with pytest.raises(ValueError):
            outside_accounts(bad, OWN)
