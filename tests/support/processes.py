"""A CLI subprocess driven from a test: stderr read by a thread, so a test can wait for a line
(``FAKE-BLOCKED <id> <when>`` from the fake connector) and then kill, interrupt or release it."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.support.fake_connector import FakeWorld, fake_env

TIMEOUT = 60


@dataclass
class Proc:
    """A CLI subprocess whose stderr lines are collected by a reader thread."""

    popen: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def start_reader(self) -> None:
        def pump(stream: IO[str]) -> None:
            for line in stream:
                self.lines.put(line)
            self.lines.put(None)

        assert self.popen.stderr is not None
        threading.Thread(target=pump, args=(self.popen.stderr,), daemon=True).start()

    def wait_for(self, text: str) -> None:
        """Block until a stderr line contains ``text`` (fails if the process ends first)."""
        while True:
            line = self.lines.get(timeout=TIMEOUT)
            if line is None:
                raise AssertionError(f"process ended before printing {text!r}; stderr: {''.join(self.seen)}")
            self.seen.append(line)
            if text in line:
                return

    def release(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write("\n")
        self.popen.stdin.flush()

    def finish(self) -> tuple[int, str, str]:
        # Not communicate(): it would read stderr too, racing the reader thread for its lines.
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        out = self.popen.stdout.read() if self.popen.stdout is not None else ""
        self.popen.wait(timeout=TIMEOUT)
        while True:
            line = self.lines.get(timeout=TIMEOUT)
            if line is None:
                break
            self.seen.append(line)
        return self.popen.returncode, out, "".join(self.seen)


def spawn(cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> Proc:
    """Start ``cmd`` with pipes for stdin, stdout and stderr, and the stderr reader."""
    popen = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc = Proc(popen)
    proc.start_reader()
    return proc


def start(world: FakeWorld, *args: str) -> Proc:
    """The CLI on ``world``'s config, with ``args``."""
    return spawn(
        [sys.executable, "-m", "offboard_audit", "--config", str(world.config_path), *args],
        world.root,
        fake_env(),
    )
