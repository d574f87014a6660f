"""A real Samba 4 Active Directory domain controller for the AD dialect tests.

``start_samba(workdir)`` provisions a domain (``samba-tool domain provision``, ~5 s) into
``workdir`` and starts ``samba`` in the foreground on its own loopback address
127.0.0.N (Samba's ports are fixed, so each instance needs its own address; binding port
389 needs root or CAP_NET_BIND_SERVICE). It is a plain function so other tests can reuse
it; ``samba_dc`` is the session fixture: one provision per test session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.lifetime import die_with_parent
from tests.support.ports import wait_for_port

REALM = "EXAMPLE.TEST"
DOMAIN = "EXAMPLE"
BASE_DN = "DC=example,DC=test"
USERS_DN = f"CN=Users,{BASE_DN}"
ADMIN_PASSWORD = "Adm1n-Passw0rd!"  # test-only, for a throwaway domain


class MissingPackageError(RuntimeError):
    """A binary the Samba tests need is not installed."""


def _require(binary: str, package: str) -> str:
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise MissingPackageError(
            f"{binary} not found: install the Debian packages {package!r} "
            f"(apt-get install -y --no-install-recommends samba samba-ad-provision "
            f"samba-dsdb-modules samba-vfs-modules krb5-user)"
        )
    return found


def _free_loopback_address() -> str:
    """A 127.0.0.N on which nothing listens on the LDAP port yet."""
    for n in range(60, 250):
        host = f"127.0.0.{n}"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, 389))
            except OSError:
                continue
            return host
    raise RuntimeError("no free 127.0.0.N address with port 389 free (needs root to bind 389)")


@dataclass
class SambaDC:
    workdir: Path
    host: str
    process: subprocess.Popen[bytes]
    realm: str = REALM
    base_dn: str = BASE_DN
    admin_password: str = ADMIN_PASSWORD
    _added: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ldap://{self.host}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}"

    @property
    def admin_upn(self) -> str:
        return f"Administrator@{self.realm}"

    def connect(self, user: str | None = None, password: str | None = None, ssl: bool = False) -> Any:
        """An ldap3 connection bound as ``user`` (DN, user@realm or DOMAIN\\user; default admin)."""
        import ldap3

        server = ldap3.Server(self.host, port=636 if ssl else 389, use_ssl=ssl, get_info=ldap3.NONE)
        return ldap3.Connection(
            server,
            user=user or self.admin_upn,
            password=password if password is not None else self.admin_password,
            auto_bind=True,
            raise_exceptions=True,
        )

    def add_user(
        self,
        sam: str,
        password: str | None = None,
        attributes: Mapping[str, Sequence[str]] | None = None,
        ou: str = USERS_DN,
        cn: str | None = None,
    ) -> str:
        """Create an enabled user (password set over LDAPS, as AD requires); returns its DN.

        The RDN is ``CN=<cn>`` (default: the sAMAccountName), as AD tools name users by display name.
        """
        import ldap3

        dn = f"CN={cn or sam},{ou}"
        attrs: dict[str, Any] = {
            "objectClass": ["top", "person", "organizationalPerson", "user"],
            "sAMAccountName": [sam],
            "userPrincipalName": [f"{sam}@{self.realm.lower()}"],
        }
        attrs.update({k: list(v) for k, v in (attributes or {}).items()})
        conn = self.connect(ssl=True)
        try:
            conn.add(dn, attributes=attrs)
            self._added.append(dn)
            changes: dict[str, Any] = {}
            if password is not None:
                encoded = f'"{password}"'.encode("utf-16-le")
                changes["unicodePwd"] = [(ldap3.MODIFY_REPLACE, [encoded])]
            # 512 = NORMAL_ACCOUNT, enabled (Samba creates users disabled: 514).
            changes["userAccountControl"] = [(ldap3.MODIFY_REPLACE, ["512"])]
            if password is None:
                # An enabled account without a password needs PASSWD_NOTREQD (0x20).
                changes["userAccountControl"] = [(ldap3.MODIFY_REPLACE, [str(512 | 0x20)])]
            conn.modify(dn, changes)
        finally:
            conn.unbind()
        return dn

    def add_group(self, name: str, members: Sequence[str]) -> str:
        dn = f"CN={name},{USERS_DN}"
        conn = self.connect()
        try:
            attrs: dict[str, Any] = {"objectClass": ["top", "group"], "sAMAccountName": [name]}
            if members:
                attrs["member"] = list(members)
            conn.add(dn, attributes=attrs)
            self._added.append(dn)
        finally:
            conn.unbind()
        return dn

    def delete_added(self) -> None:
        import ldap3

        conn = self.connect()
        try:
            for dn in reversed(self._added):
                with contextlib.suppress(ldap3.core.exceptions.LDAPNoSuchObjectResult):
                    conn.delete(dn)
            self._added.clear()
        finally:
            conn.unbind()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def provision(workdir: Path, host: str) -> Path:
    """Provision a fresh domain into ``workdir``; returns the smb.conf path."""
    samba_tool = _require("samba-tool", "samba")
    if not Path("/usr/share/samba/setup").exists():
        raise MissingPackageError("/usr/share/samba/setup missing: install 'samba-ad-provision'")
    # Provisioning sets the sysvol ACLs through the acl_xattr VFS module.
    if not any(Path("/usr/lib").glob("*/samba/vfs/acl_xattr.so")):
        raise MissingPackageError("samba's acl_xattr VFS module missing: install 'samba-vfs-modules'")
    workdir.mkdir(parents=True, exist_ok=True)
    run = workdir / "run"
    run.mkdir(exist_ok=True)
    opts = {
        "interfaces": f"{host}/8",
        "bind interfaces only": "yes",
        "server services": "ldap, kdc",
        "pid directory": str(run),
        "ncalrpc dir": str(run / "ncalrpc"),
        "winbindd socket directory": str(run / "winbindd"),
        "ntp signd socket directory": str(run / "ntp_signd"),
        "log file": str(workdir / "samba.log"),
        "dns proxy": "no",
    }
    cmd = [
        samba_tool,
        "domain",
        "provision",
        f"--realm={REALM}",
        f"--domain={DOMAIN}",
        "--server-role=dc",
        "--dns-backend=NONE",
        f"--adminpass={ADMIN_PASSWORD}",
        "--use-rfc2307",
        f"--targetdir={workdir}",
        *[f"--option={k}={v}" for k, v in opts.items()],
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        hint = ""
        if "dsdb" in (proc.stderr + proc.stdout).lower():
            hint = " (is 'samba-dsdb-modules' installed?)"
        raise RuntimeError(f"samba-tool domain provision failed{hint}:\n{proc.stdout}\n{proc.stderr}")
    smb_conf = workdir / "etc" / "smb.conf"
    text = smb_conf.read_text()
    # Provision drops this; without it simple binds over plain LDAP get strongerAuthRequired.
    text = text.replace("[global]\n", "[global]\n\tldap server require strong auth = no\n", 1)
    smb_conf.write_text(text)
    return smb_conf


def start_samba(workdir: Path, host: str | None = None) -> SambaDC:
    """Provision and start a DC on ``host`` (default: a free 127.0.0.N)."""
    samba = _require("samba", "samba")
    host = host or _free_loopback_address()
    smb_conf = provision(workdir, host)
    log = (workdir / "samba.stdout").open("wb")
    env = {**os.environ, "KRB5_CONFIG": str(workdir / "private" / "krb5.conf")}
    process = subprocess.Popen(
        [samba, "-s", str(smb_conf), "-F", "--no-process-group", "-M", "single"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=die_with_parent,
    )
    dc = SambaDC(workdir, host, process)
    try:
        _wait_ready(dc)
    except BaseException:
        dc.stop()
        raise
    return dc


def _wait_ready(dc: SambaDC, timeout: float = 60.0) -> None:
    import ldap3

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if dc.process.poll() is not None:
            out = (dc.workdir / "samba.stdout").read_text(errors="replace")
            raise RuntimeError(f"samba exited with {dc.process.returncode}:\n{out[-4000:]}")
        try:
            wait_for_port(dc.host, 389, timeout=1.0)
            conn = dc.connect()
            conn.unbind()
            return
        except (TimeoutError, ldap3.core.exceptions.LDAPException) as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"samba on {dc.host} did not accept a bind: {last}")


@pytest.fixture(scope="session")
def samba_dc() -> Iterator[SambaDC]:
    """One provisioned, running Samba AD DC for the session (needs root)."""
    workdir = Path(tempfile.mkdtemp(prefix="offboard-samba-"))
    dc = start_samba(workdir)
    try:
        yield dc
    finally:
        dc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def samba(samba_dc: SambaDC) -> Iterator[SambaDC]:
    """The session DC; users and groups a test adds are deleted afterwards."""
    try:
        yield samba_dc
    finally:
        samba_dc.delete_added()
