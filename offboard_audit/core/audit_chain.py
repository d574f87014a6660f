"""The tamper-evident audit log's chain: the event as stored, its hash and the audit key's MAC.

Each event carries ``prev_hash`` (the hash of the event before it; the first event uses
:data:`GENESIS`) and its own ``hash`` = SHA-256 over the previous hash and the event's
content, sequence number included. Changing an event's content breaks its own hash;
deleting or reordering events breaks the sequence and the links. Storage
(``storage/actions.py``) appends under a lock so that concurrent writers never fork the chain.

Three modes, each adding to the one before (docs/revocation.md, "What the audit trail proves"):

* **unkeyed**: the plain hash chain. It shows that the events are consistent with each other,
  but anyone who can write to the database can edit an event and re-hash everything after it
  (or delete the first events and re-hash the rest), and the result verifies.
* **keyed** (``[audit] key_env``): every event also carries a ``mac``, an HMAC-SHA256 with a
  secret from the environment over ``"offboard-audit-event/1\\n" + hash``. The hash covers the
  previous hash, so a MAC vouches for its event and everything before it: rewriting any of them
  needs the key. A key set later starts keyed events from then on; the unkeyed events before the
  first keyed one are protected by that event's MAC from the moment it was written. Once a keyed
  event exists, an unkeyed event after it is a problem (written without the key, or its MAC
  stripped), and with the key set a log without any keyed event is one too (every MAC stripped,
  or the keyed part cut off). What a key cannot show is a cut-off *keyed* tail.
* **anchored** (``[audit] anchor_file``): after each pass that appended events, the head (its
  sequence number and hash) and the number of events are appended to a JSON-lines file outside
  the database. Verification checks the database against every anchor and names the first
  event that disagrees. That is what catches a cut-off tail, which no chain can show by itself,
  and a chain rewritten without MACs.

This module holds what writing the chain needs: storage appends with :func:`event_hash` and,
keyed, :meth:`ChainKey.event_mac` (plan files sign with the same key). Checking a chain (links,
MACs, anchors) and saying what the check proves is ``core/chain_verify.py``. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from offboard_audit.core.records import require_aware, require_aware_fields

GENESIS = "0" * 64

# The audit key must be long enough that guessing it is not an option (e.g. `openssl rand -hex 32`).
MIN_KEY_BYTES = 32
# Labels that keep the three uses of the key apart (an event MAC can never pass as a plan
# signature or as the key id).
_KEY_ID_LABEL = b"offboard-audit/key-id"
_EVENT_LABEL = b"offboard-audit-event/1\n"


@dataclass(frozen=True)
class AuditEvent:
    """One event of the audit log as stored. ``mac``/``key_id`` are set on keyed events only."""

    seq: int
    at: datetime
    kind: str
    actor: str
    run_id: str | None
    action_id: str | None
    payload_json: str
    prev_hash: str
    hash: str
    mac: str | None = None
    key_id: str | None = None

    def __post_init__(self) -> None:
        require_aware_fields(self, "at")

    @property
    def payload(self) -> dict[str, Any]:
        value = json.loads(self.payload_json)
        return value if isinstance(value, dict) else {"value": value}

    @property
    def keyed(self) -> bool:
        return self.mac is not None


@dataclass(frozen=True)
class ChainKey:
    """The audit key (``[audit] key_env``). It comes from the environment only and is never
    printed: ``repr`` leaves it out, and what is stored or shown is its ``key_id``."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise ValueError(f"the audit key must be at least {MIN_KEY_BYTES} bytes long")

    @property
    def key_id(self) -> str:
        """Names the key without revealing it (stored with each keyed event)."""
        return hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def event_mac(self, event_hash: str) -> str:
        return hmac.new(self.secret, _EVENT_LABEL + event_hash.encode("ascii"), hashlib.sha256).hexdigest()

    def sign(self, label: bytes, data: bytes) -> str:
        """HMAC-SHA256 over ``label + "\\n" + data`` (plan files)."""
        return hmac.new(self.secret, label + b"\n" + data, hashlib.sha256).hexdigest()


def canonical_payload(payload: Any) -> str:
    """The payload as stored: compact JSON with sorted keys, so the hash input is stable."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    kind: str,
    actor: str,
    run_id: str | None,
    action_id: str | None,
    payload_json: str,
) -> str:
    """SHA-256 over the previous hash and every field of the event."""
    require_aware(at, "at")
    content = json.dumps(
        [
            prev_hash,
            seq,
            at.astimezone(UTC).isoformat(timespec="microseconds"),
            kind,
            actor,
            run_id,
            action_id,
            payload_json,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def recompute(event: AuditEvent) -> str:
    return event_hash(
        event.prev_hash,
        event.seq,
        event.at,
        event.kind,
        event.actor,
        event.run_id,
        event.action_id,
        event.payload_json,
    )
