"""Which accounts and credentials a failed enrichment protects (offboard_audit/engine/collect.py
``unenriched``): exactly those of the scopes whose enrichment failed, never those of the scopes
read in full. Their finding ids are the ones a run may not close for lack of evidence
(``core/lifecycle.unproven_ids``); taking the other scopes instead would let a stored finding
about an account of the failed scope close only because its last login was not read.
"""

from __future__ import annotations

from pathlib import Path

from offboard_audit.core.records import EnrichmentFailure, SourceData
from offboard_audit.engine.collect import AccountRead, unenriched
from tests.integration.test_mutation_holes_keep_last_known import sys_config
from tests.support.fakes import FakeAccountSource, account, credential


def test_only_the_accounts_and_credentials_of_the_scope_whose_enrichment_failed_are_unenriched(
    tmp_path: Path,
) -> None:
    in_failed = account("bob", scope="prod", uid="uid-bob")
    in_read_fully = account("carol", scope="dev", uid="uid-carol")
    keys = [credential(in_failed, "K1"), credential(in_read_fully, "K2")]
    read = AccountRead(
        sys_config(tmp_path),
        FakeAccountSource(),
        data=SourceData(accounts=(in_failed, in_read_fully), credentials=tuple(keys)),
        accounts=[in_failed, in_read_fully],
        credentials=list(keys),
        enrichment_failures=[EnrichmentFailure("prod", "last-logon evidence unavailable")],
    )

    accounts, credentials = unenriched([read])

    assert [a.account_id for a in accounts] == ["bob"]
    assert [c.credential_id for c in credentials] == ["K1"]
