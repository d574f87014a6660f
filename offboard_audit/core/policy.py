"""The safety policy (``[policy]`` in the config file), as the pure core reads it.

Loading and validating it from TOML is the config package's job; planning and evaluation
only read these values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class PolicyConfig:
    grace_period: timedelta = timedelta(0)
    auto_revoke: bool = False
    # Blast-radius cap: people one pass may revoke (``max_revocations_per_run`` is the old name of
    # this key), and actions (a leaver in many groups has many).
    max_people_per_run: int = 25
    max_actions_per_run: int = 1000
    max_new_terminations: float = 0.05
    max_missing_people: float = 0.05
    max_rehires: float = 0.05
    min_breaker_count: int = 3
    orphan_accounts: bool = True
    protected: tuple[str, ...] = ()
    delete_after: timedelta | None = None
    service_accounts_owned: bool = True
    # Exposure findings: rotate secrets whose own rotation is configured (Secrets Manager
    # RotateSecret) instead of only listing rotate tasks. Off by default.
    auto_rotate_secrets: bool = False
