"""The exposure ledger: events, stream checkpoints and the inventory (core/exposure.py records).

Events are appended with the checkpoint of the batch they came in, in one transaction
(:meth:`ExposureStore.save_batch`): a crash between two batches neither skips nor doubles one,
and an event id seen again (CloudTrail delivers some events twice) is dropped. The inventory of a
scope is replaced only by a successful read of that scope (:meth:`ExposureStore.save_inventory`),
and only for what that read listed; a failed scope, or a kind or region not listed, keeps its last
rows, which the engine reads back as stale.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import RowMapping, and_, delete, func, insert, select, tuple_

from offboard_audit.core.exposure import (
    Actor,
    Checkpoint,
    EventBatch,
    ExposureEvent,
    InventoryRead,
    ObjectRef,
    PersistenceState,
    SecretState,
)
from offboard_audit.core.records import CredentialKind, ExposureHow
from offboard_audit.storage.db import Database, chunks
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import (
    EXPOSURE_CHECKPOINTS,
    EXPOSURE_EVENTS,
    EXPOSURE_OBJECTS,
    EXPOSURE_SECRETS,
)

# Ids per IN list when looking up events of many actors.
_IDS = 500


class ExposureStore(Database):
    # --- events and checkpoints ---------------------------------------------------------------

    def exposure_checkpoints(self, source: str) -> dict[str, Checkpoint]:
        """Every stored checkpoint of ``source``, by stream."""
        c = EXPOSURE_CHECKPOINTS.c
        q = select(c.stream, c.position, c.recent_json).where(c.source == source)
        with self.begin() as conn:
            return {
                stream: Checkpoint(stream, position, tuple(json.loads(recent)))
                for stream, position, recent in conn.execute(q)
            }

    def save_batch(self, source: str, batch: EventBatch, now: datetime) -> int:
        """Append the batch's events (dropping ids already stored) and move its stream's
        checkpoint, in one transaction. Returns how many events were new."""
        events = list({e.event_id: e for e in batch.events}.values())
        with self.begin() as conn:
            fresh = events
            if events:
                c = EXPOSURE_EVENTS.c
                ids = [e.event_id for e in events]
                known: set[str] = set()
                for part in chunks(ids, _IDS):
                    q = select(c.event_id).where(c.source == source, c.event_id.in_(list(part)))
                    known.update(conn.scalars(q))
                fresh = [e for e in events if e.event_id not in known]
                for rows in chunks([_event_row(source, e) for e in fresh]):
                    conn.execute(insert(EXPOSURE_EVENTS), list(rows))
            if batch.checkpoint is not None:
                cp = batch.checkpoint
                k = EXPOSURE_CHECKPOINTS.c
                conn.execute(delete(EXPOSURE_CHECKPOINTS).where(k.source == source, k.stream == cp.stream))
                conn.execute(
                    insert(EXPOSURE_CHECKPOINTS).values(
                        source=source,
                        stream=cp.stream,
                        position=cp.position,
                        recent_json=json.dumps(list(cp.recent)),
                        updated_at=now,
                    )
                )
            return len(fresh)

    def exposure_actors(self, source: str) -> list[Actor]:
        """Every distinct actor of ``source``'s events (names merged across the events of one
        identity only: the translation puts what tells people apart, such as a session's source
        identity or a user's UserId, in the identity)."""
        c = EXPOSURE_EVENTS.c
        q = (
            select(c.actor_identity, c.actor_kind, c.actor_account_id, c.actor_names_json, c.actor_uid)
            .where(c.source == source)
            .distinct()
        )
        merged: dict[str, Actor] = {}
        with self.begin() as conn:
            for identity, kind, account_id, names_json, uid in conn.execute(q):
                names = tuple(json.loads(names_json))
                old = merged.get(identity)
                if old is not None:
                    names = tuple(dict.fromkeys((*old.names, *names)))
                    kind = old.kind or kind
                    account_id = old.account_id or account_id
                    uid = old.uid or uid
                merged[identity] = Actor(identity, kind, account_id, names, uid)
        return [merged[k] for k in sorted(merged)]

    def exposure_events(self, source: str, identities: Collection[str]) -> list[ExposureEvent]:
        """The events of ``source`` by the given actors, oldest first."""
        c = EXPOSURE_EVENTS.c
        out: list[ExposureEvent] = []
        with self.begin() as conn:
            for part in chunks(sorted(identities), _IDS):
                q = select(EXPOSURE_EVENTS).where(c.source == source, c.actor_identity.in_(list(part)))
                out.extend(_event(r) for r in conn.execute(q).mappings())
        out.sort(key=lambda e: (e.at, e.event_id))
        return out

    def exposure_event_count(self, source: str) -> int:
        c = EXPOSURE_EVENTS.c
        with self.begin() as conn:
            return int(
                conn.scalar(select(func.count()).select_from(EXPOSURE_EVENTS).where(c.source == source)) or 0
            )

    # --- inventory ---------------------------------------------------------------------------

    def save_inventory(self, source: str, read: InventoryRead, run_id: str) -> None:
        """Replace the secrets ``read`` listed (``InventoryRead.listed``) in every scope it read
        successfully, and store the state of every object it checked; a failed scope keeps what
        was stored for it, and so does a kind or region that was not listed (a service switched
        off is no proof that its secrets were rotated)."""
        failed = {f.scope for f in read.failed_scopes}
        good = [s for s in read.scopes if s not in failed]
        secrets = [s for s in read.secrets if s.scope in good]
        objects = [o for o in read.objects if o.ref.scope not in failed]
        with self.begin() as conn:
            s = EXPOSURE_SECRETS.c
            replaced = {x.key for x in secrets}
            for part in chunks(good, _IDS):
                q = select(s.scope, s.kind, s.secret_id).where(s.source == source, s.scope.in_(list(part)))
                for scope, kind, secret_id in conn.execute(q):
                    if read.lists(CredentialKind(kind), secret_id):
                        replaced.add((scope, kind, secret_id))
            for key_part in chunks(sorted(replaced), _IDS):
                conn.execute(
                    delete(EXPOSURE_SECRETS).where(
                        and_(s.source == source, tuple_(s.scope, s.kind, s.secret_id).in_(list(key_part)))
                    )
                )
            rows = [
                row_of(
                    x,
                    EXPOSURE_SECRETS,
                    grantees_json=json.dumps(list(x.grantees)),
                    aliases_json=json.dumps(list(x.aliases)),
                    updated_run=run_id,
                )
                for x in secrets
            ]
            for batch in chunks(rows):
                conn.execute(insert(EXPOSURE_SECRETS), list(batch))
            o = EXPOSURE_OBJECTS.c
            keys = [(x.ref.scope, x.ref.kind.value, x.ref.object_id) for x in objects]
            for key_part in chunks(keys, _IDS):
                conn.execute(
                    delete(EXPOSURE_OBJECTS).where(
                        and_(o.source == source, tuple_(o.scope, o.kind, o.object_id).in_(list(key_part)))
                    )
                )
            obj_rows = [_object_row(source, x, run_id) for x in objects]
            for batch in chunks(obj_rows):
                conn.execute(insert(EXPOSURE_OBJECTS), list(batch))

    def exposure_secrets(self, source: str) -> list[SecretState]:
        s = EXPOSURE_SECRETS.c
        with self.begin() as conn:
            rows = conn.execute(select(EXPOSURE_SECRETS).where(s.source == source)).mappings()
            return [
                record_of(
                    SecretState,
                    r,
                    grantees=tuple(json.loads(r["grantees_json"])),
                    aliases=tuple(json.loads(r["aliases_json"])),
                )
                for r in rows
            ]

    def exposure_objects(
        self, source: str, refs: Iterable[ObjectRef]
    ) -> dict[tuple[str, str, str], PersistenceState]:
        """The stored state of each of ``refs`` that has one, by ``ObjectRef.key``."""
        wanted = {r.key: r for r in refs}
        o = EXPOSURE_OBJECTS.c
        out: dict[tuple[str, str, str], PersistenceState] = {}
        with self.begin() as conn:
            for part in chunks(sorted(wanted), _IDS):
                q = select(EXPOSURE_OBJECTS).where(
                    o.source == source, tuple_(o.scope, o.kind, o.object_id).in_(list(part))
                )
                for r in conn.execute(q).mappings():
                    key = (r["scope"], r["kind"], r["object_id"])
                    if r["fingerprint"] != wanted[key].fingerprint:
                        continue  # checked for another version of the object: says nothing now
                    out[key] = PersistenceState(
                        source,
                        wanted[key],
                        bool(r["present"]),
                        r["detail"],
                        tuple(json.loads(r["remove_by_json"])),
                    )
        return out


def _event_row(source: str, e: ExposureEvent) -> dict[str, object]:
    return {
        "source": source,
        "event_id": e.event_id,
        "scope": e.scope,
        "stream": e.stream,
        "at": e.at,
        "action": e.action,
        "how": e.how.value,
        "actor_identity": e.actor.identity,
        "actor_kind": e.actor.kind,
        "actor_account_id": e.actor.account_id,
        "actor_names_json": json.dumps(list(e.actor.names)),
        "actor_uid": e.actor.uid,
        "target_scope": e.target.scope,
        "target_kind": e.target.kind.value,
        "target_id": e.target.object_id,
        "target_owner": e.target.owner,
        "target_fingerprint": e.target.fingerprint,
    }


def _event(r: RowMapping) -> ExposureEvent:
    return ExposureEvent(
        source=r["source"],
        scope=r["scope"],
        event_id=r["event_id"],
        at=r["at"],
        action=r["action"],
        how=ExposureHow(r["how"]),
        actor=Actor(
            r["actor_identity"],
            r["actor_kind"],
            r["actor_account_id"],
            tuple(json.loads(r["actor_names_json"])),
            r["actor_uid"],
        ),
        target=ObjectRef(
            r["target_scope"],
            CredentialKind(r["target_kind"]),
            r["target_id"],
            r["target_owner"],
            r["target_fingerprint"],
        ),
        stream=r["stream"],
    )


def _object_row(source: str, x: PersistenceState, run_id: str) -> dict[str, object]:
    return {
        "source": source,
        "scope": x.ref.scope,
        "kind": x.ref.kind.value,
        "object_id": x.ref.object_id,
        "owner": x.ref.owner,
        "fingerprint": x.ref.fingerprint,
        "present": x.present,
        "detail": x.detail,
        "remove_by_json": json.dumps(list(x.remove_by)),
        "updated_run": run_id,
    }
