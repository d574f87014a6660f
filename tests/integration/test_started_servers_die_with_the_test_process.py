"""A slapd, OpenBao or PostgreSQL the tests start does not outlive a test process killed outright (no
teardown runs: SIGKILL, a CI timeout, mutmut ending a mutant that ran too long). Mutation runs
used to leave one slapd behind per timed-out mutant.

A child Python process starts the servers with the tests' own helpers and prints their pids;
it is then SIGKILLed, and each server must be gone soon after (the kernel's parent-death signal,
``tests/support/lifetime.py``). Samba is started the same way and is left out here only because
provisioning a domain takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys, tempfile
from pathlib import Path
from tests.support.openbao import start_openbao
from tests.support.postgres import start_postgres
from tests.support.slapd import start_slapd

base = Path(sys.argv[1])
(base / "ldap").mkdir()
(base / "bao").mkdir()
slapd = start_slapd(base / "ldap")
bao = start_openbao(base / "bao")
# Not below base: the postgres user must reach its directory, and pytest's are root-only.
pg_base = Path(tempfile.mkdtemp(prefix="offboard-pg-"))
print(pg_base, flush=True)
pg = start_postgres(pg_base)
print(json.dumps({"slapd": slapd.process.pid, "openbao": bao.process.pid, "postgres": pg.process.pid}), flush=True)
sys.stdin.read()  # until killed
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)  # polling the process table for an exit, not waiting in its place
    return False


def test_slapd_openbao_and_postgres_exit_when_the_process_that_started_them_is_killed(tmp_path: Path) -> None:
    pids: dict[str, int] = {}
    pg_base: Path | None = None
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        pg_base = Path(child.stdout.readline().strip())
        pids.update(json.loads(child.stdout.readline()))
        assert all(_alive(pid) for pid in pids.values()), pids
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        left = [name for name, pid in pids.items() if not _gone_within(pid, 20)]
        assert left == [], f"still running after their parent was killed: {left}"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if pg_base is not None and pg_base.name.startswith("offboard-pg-"):
            shutil.rmtree(pg_base, ignore_errors=True)
