"""Exemptions: a selector, a reason and an expiry; removed ones are kept (``removed_at``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update

from offboard_audit.core.records import Exemption
from offboard_audit.storage.db import Database
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import EXEMPTIONS


class ExemptionStore(Database):
    def add_exemption(self, exemption: Exemption) -> None:
        with self.begin() as conn:
            conn.execute(insert(EXEMPTIONS).values(row_of(exemption, EXEMPTIONS)))

    def remove_exemption(self, exemption_id: str, now: datetime) -> bool:
        with self.begin() as conn:
            result = conn.execute(
                update(EXEMPTIONS)
                .where(EXEMPTIONS.c.exemption_id == exemption_id, EXEMPTIONS.c.removed_at.is_(None))
                .values(removed_at=now)
            )
            return bool(result.rowcount)

    def list_exemptions(self, include_removed: bool = False) -> list[Exemption]:
        q = select(EXEMPTIONS)
        if not include_removed:
            q = q.where(EXEMPTIONS.c.removed_at.is_(None))
        with self.begin() as conn:
            return [
                record_of(Exemption, r) for r in conn.execute(q.order_by(EXEMPTIONS.c.created_at)).mappings()
            ]
