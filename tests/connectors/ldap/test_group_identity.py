"""LeaveGroup's undo re-adds the member only to the same group, by the group's entryUUID, not to
whatever group now has the DN (the session slapd: a group deleted and added again under the same
DN is another group, with a new entryUUID and possibly other rights)."""

from __future__ import annotations

import pytest

from connectors.ldap.revoker import LEAVE_GROUP
from offboard_audit.core.actions import ResourceState
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import apply_step, undo_step
from tests.connectors.ldap.test_mutation_holes_leave_group import (
    DEVS,
    JANE,
    KARL,
    attribute,
    leave,
    make_revoker,
    seed,
)
from tests.support.slapd import SlapdServer

pytestmark = pytest.mark.slapd


def recreate_devs(slapd: SlapdServer) -> str:
    """Delete ``cn=devs`` and add a new group under the same DN (karl only); its entryUUID."""
    slapd.delete_entry(DEVS)
    slapd.add_entries([(DEVS, {"objectClass": ["groupOfNames"], "cn": ["devs"], "member": [KARL]})])
    return str(attribute(slapd, DEVS, "entryUUID")[0])


def test_undo_refuses_a_group_added_again_under_the_same_dn_and_adds_nothing(slapd: SlapdServer) -> None:
    uuid = seed(slapd)
    old_group = str(attribute(slapd, DEVS, "entryUUID")[0])
    rev = make_revoker(slapd)
    target = leave(DEVS, uuid)
    step = apply_step(rev, LEAVE_GROUP, target)
    assert step.status == ActionStatus.APPLIED and step.before is not None
    assert step.before.value("group_identity") == old_group
    new_group = recreate_devs(slapd)
    assert new_group != old_group

    undone = undo_step(rev, LEAVE_GROUP, target, step.before)
    assert undone.status == ActionStatus.TARGET_CHANGED
    assert undone.error and new_group in undone.error and old_group in undone.error
    assert attribute(slapd, DEVS, "member") == [KARL]


def test_undo_of_an_action_recorded_without_the_groups_identity_refuses_instead_of_adding_by_dn(
    slapd: SlapdServer,
) -> None:
    uuid = seed(slapd)
    rev = make_revoker(slapd)
    target = leave(DEVS, uuid)
    assert apply_step(rev, LEAVE_GROUP, target).status == ActionStatus.APPLIED
    # The prior state an earlier version recorded: the group's DN and the member value only.
    legacy = ResourceState(
        exists=True, active=True, data=(("group_dn", DEVS), ("member", JANE)), identity=uuid
    )
    undone = undo_step(rev, LEAVE_GROUP, target, legacy)
    assert undone.status == ActionStatus.TARGET_CHANGED
    assert undone.error and "no identity was recorded for group" in undone.error
    assert attribute(slapd, DEVS, "member") == [KARL]
