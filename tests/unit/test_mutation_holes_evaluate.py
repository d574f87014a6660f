"""Finding reasons name the leaver: by name, or by employee id when HR gives no name.

Killed mutants of ``core/evaluate.py`` (``name or employee_id`` written as ``name and
employee_id``): the shared test fakes give every person a name equal to their id, which hid them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from offboard_audit.core.evaluate import evaluate
from offboard_audit.core.records import Link, Rule
from offboard_audit.engine.collect import group_credentials
from tests.support.fakes import T0, account, credential, leaver

NOW = T0 + timedelta(days=30)
USED_AFTER = T0 + timedelta(days=3)
UNUSED_SINCE = T0 - timedelta(days=3)


@pytest.mark.parametrize(
    ("last_used", "rule", "says"),
    [
        (USED_AFTER, Rule.USED_AFTER_TERMINATION, "after Bob Builder left on"),
        (UNUSED_SINCE, Rule.CREDENTIAL_AFTER_TERMINATION, "; Bob Builder left on"),
    ],
)
def test_the_reason_names_the_leaver_by_name(last_used, rule, says) -> None:
    bob = leaver("E2", T0, name="Bob Builder")
    a = account("bob")
    (f,) = evaluate([Link(a, (bob,))], group_credentials([credential(a, "K", last_used_at=last_used)]), NOW)
    assert f.rule is rule
    assert says in f.reason
    assert "E2" not in f.reason


@pytest.mark.parametrize(
    ("last_used", "says"),
    [(USED_AFTER, "after E2 left on"), (UNUSED_SINCE, "; E2 left on")],
)
def test_without_a_name_the_reason_names_the_leaver_by_employee_id(last_used, says) -> None:
    nameless = replace(leaver("E2", T0), name="")
    a = account("bob")
    (f,) = evaluate(
        [Link(a, (nameless,))], group_credentials([credential(a, "K", last_used_at=last_used)]), NOW
    )
    assert says in f.reason
