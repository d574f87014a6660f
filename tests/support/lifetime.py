"""Servers the tests start die with the process that started them.

A fixture's teardown stops its server; but a test process killed outright (SIGKILL, a CI
timeout, mutmut ending a mutant that ran too long) runs no teardown, and the server would live
on, holding its loopback port. Linux can send the child a signal when its parent dies
(``prctl(PR_SET_PDEATHSIG)``): ``die_with_parent`` is the ``preexec_fn`` that asks for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    prctl: Callable[[int, int], int] = libc.prctl
    return prctl


# Looked up once here, not in the forked child (where only async-signal-safe work belongs).
_PRCTL = _prctl()


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """``preexec_fn`` for ``subprocess.Popen``: send the child ``sig`` when the starting thread dies."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, sig)
