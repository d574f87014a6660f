"""Files the tool writes that must stay owner-only (0600) whatever the umask: the SQLite database
(SQLite gives its -wal and -shm files the database file's permissions), plan files, anchor files,
evidence packs, audit reports (``audit --output``) and the HR file ``demo --write-config`` writes.
They hold credential inventories, people and the audit trail.

A file is created with mode 0600 and then ``fchmod``-ed to 0600, so a umask can neither widen
nor narrow it. A file that already exists keeps its permissions (someone chose them), and
nothing is ever chmod-ed through a path that is not a regular file we just created (``--output
/dev/stdout`` stays untouched).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

PRIVATE = 0o600


def _open_new_or_existing(path: Path, flags: int) -> int:
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        return os.open(path, flags)
    try:
        os.fchmod(fd, PRIVATE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private(path: Path) -> None:
    """Create ``path`` empty and owner-only if it does not exist yet."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE)
    finally:
        os.close(fd)


def write_private_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (replacing its content); a new file is created owner-only."""
    fd = _open_new_or_existing(path, os.O_WRONLY | os.O_TRUNC)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def open_private_append(path: Path) -> TextIO:
    """``path`` opened for appending (``O_APPEND``: each write lands at the end, even with other
    writers); a new file is created owner-only."""
    fd = _open_new_or_existing(path, os.O_WRONLY | os.O_APPEND)
    return open(fd, "a", encoding="utf-8")
