"""The pipeline's fault-test points: named by the environment in a real process, injected in
process. The crash-consistency tests drive them from outside a real process; these pin what a
point does when it is or is not the one named."""

from __future__ import annotations

import io

from offboard_audit.engine.run_record import KILL_AT_ENV, PAUSE_AT_ENV, FaultPoints


class _Answer:
    """Stands for stdin: counts the lines a pause waited for."""

    def __init__(self) -> None:
        self.waits = 0

    def readline(self) -> str:
        self.waits += 1
        return "\n"


def test_the_points_come_from_the_two_environment_variables_and_an_empty_one_names_none() -> None:
    env = {PAUSE_AT_ENV: "before-commit", KILL_AT_ENV: "findings-stored"}
    assert FaultPoints.from_env(env) == FaultPoints(pause_at="before-commit", kill_at="findings-stored")
    assert FaultPoints.from_env({PAUSE_AT_ENV: "", KILL_AT_ENV: ""}) == FaultPoints()
    assert FaultPoints.from_env({}) == FaultPoints()
    assert (PAUSE_AT_ENV, KILL_AT_ENV) == ("OFFBOARD_AUDIT_TEST_PAUSE_AT", "OFFBOARD_AUDIT_TEST_KILL_AT")


def test_only_the_named_point_pauses_saying_so_and_waiting_for_one_line() -> None:
    answer, err = _Answer(), io.StringIO()
    faults = FaultPoints(pause_at="findings-stored", stdin=answer, stderr=err)
    faults.hit("before-commit")
    assert (answer.waits, err.getvalue()) == (0, "")
    faults.hit("findings-stored")
    assert (answer.waits, err.getvalue()) == (1, "PAUSED findings-stored\n")


def test_a_point_named_only_to_kill_at_another_point_neither_pauses_nor_kills_here() -> None:
    answer, err = _Answer(), io.StringIO()
    FaultPoints(kill_at="findings-stored", stdin=answer, stderr=err).hit("before-commit")
    assert (answer.waits, err.getvalue()) == (0, "")
