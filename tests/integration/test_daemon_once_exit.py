"""``daemon --once`` exit codes when ``auto_revoke`` is on (real CLI process, the fake connector,
SQLite): cron and CI read the exit code, so a revocation pass that was refused or whose actions
failed must not exit 0 as if the leavers had lost their access.

The world (tests/support/fake_connector.standard_world): two leavers, alice (E1: login, key AK1,
group g-admins) and bob (E2: login, key AK2), one active person and a protected account.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.daemon import daemon_env, run_cli
from tests.support.fake_connector import PLUGIN_REF, standard_world

pytestmark = pytest.mark.slow


def test_auto_revoke_within_the_caps_exits_0_and_the_leavers_lose_their_keys(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'audit.db'}", {"auto_revoke": True})
    env = daemon_env({"OFFBOARD_AUDIT_EXTRA_SOURCES": PLUGIN_REF})

    once = run_cli(world.config_path, env, "daemon", "--once")

    assert once.returncode == 0, once.stderr
    assert sorted(world.changes()) == [
        ("deactivate_key", "AK1"),
        ("deactivate_key", "AK2"),
        ("disable_account", "alice"),
        ("disable_account", "bob"),
        ("remove_group", "group/g-admins"),
    ]
    assert "auto-revoke" not in once.stderr


def test_auto_revoke_refused_by_the_blast_radius_cap_exits_1_saying_why(tmp_path: Path) -> None:
    # Two leavers, a cap of one person: the plan is refused whole and nothing is revoked.
    world = standard_world(
        tmp_path, f"sqlite:///{tmp_path / 'audit.db'}", {"auto_revoke": True, "max_people_per_run": 1}
    )
    env = daemon_env({"OFFBOARD_AUDIT_EXTRA_SOURCES": PLUGIN_REF})

    once = run_cli(world.config_path, env, "daemon", "--once")

    assert once.returncode == 1, once.stderr
    assert world.changes() == []
    assert (
        "auto-revoke: revocation refused: blast-radius cap" in once.stderr
        and "max_people_per_run" in once.stderr
    )


def test_auto_revoke_whose_action_failed_exits_1_naming_the_action(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'audit.db'}", {"auto_revoke": True})
    # The fake system refuses every change to bob's key AK2 (its ``fail`` knob); alice's actions
    # still go through.
    world.update(lambda st: st.update(fail={"AK2": "AccessDenied on AK2"}))
    env = daemon_env({"OFFBOARD_AUDIT_EXTRA_SOURCES": PLUGIN_REF})

    once = run_cli(world.config_path, env, "daemon", "--once")

    assert once.returncode == 1, once.stderr
    assert ("deactivate_key", "AK1") in world.changes() and ("deactivate_key", "AK2") not in world.changes()
    assert "auto-revoke: 1 action(s) failed: fake " in once.stderr and "AccessDenied on AK2" in once.stderr
