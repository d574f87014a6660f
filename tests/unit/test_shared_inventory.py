"""The exposure inventory read scope by scope: a failed scope fails alone, nothing is lost."""

from __future__ import annotations

import threading

import pytest

from connectors._shared.inventory import ScopeFound, inventory_by_scope
from offboard_audit.core.exposure import SecretState
from offboard_audit.core.records import CredentialKind, ScopeFailure


def secret(scope: str, n: int) -> SecretState:
    return SecretState(source="s", scope=scope, kind=CredentialKind.SECRET, secret_id=f"{scope}/{n}")


@pytest.mark.parametrize("workers", [1, 4])
def test_one_failed_scope_is_a_failure_of_that_scope_while_the_others_report_in_scope_order(
    workers: int,
) -> None:
    def read(scope: str) -> ScopeFound | ScopeFailure:
        if scope == "b":
            return ScopeFailure("b", "denied")
        return ScopeFound(secrets=[secret(scope, 1), secret(scope, 2)], warnings=[f"{scope}: note"])

    read_all = inventory_by_scope(["a", "b", "c"], read, workers=workers, warnings=["before"])
    assert [s.secret_id for s in read_all.secrets] == ["a/1", "a/2", "c/1", "c/2"]
    assert read_all.failed_scopes == (ScopeFailure("b", "denied"),)
    assert read_all.scopes == ("a", "b", "c")  # a failed scope was read too: its old data goes stale
    assert read_all.warnings == ("before", "a: note", "c: note")


def test_with_several_workers_scopes_are_read_concurrently() -> None:
    # Both reads must be in flight at once for either to finish: a serial read would time out.
    both = threading.Barrier(2, timeout=30)

    def read(scope: str) -> ScopeFound | ScopeFailure:
        both.wait()
        return ScopeFound(secrets=[secret(scope, 1)])

    assert len(inventory_by_scope(["a", "b"], read, workers=2).secrets) == 2


def test_with_one_worker_scopes_are_read_in_order_in_the_calling_thread() -> None:
    seen: list[tuple[str, threading.Thread]] = []

    def read(scope: str) -> ScopeFound | ScopeFailure:
        seen.append((scope, threading.current_thread()))
        return ScopeFound()

    inventory_by_scope(["m1", "m2", "m3"], read)
    assert seen == [(s, threading.current_thread()) for s in ("m1", "m2", "m3")]
