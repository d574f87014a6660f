"""A real, throwaway OpenLDAP ``slapd`` for the tests and the benchmark.

``start_slapd(workdir)`` builds its own cn=config with ``slapadd -n0`` (mdb with no-sync;
schemas core, cosine, nis, inetorgperson plus an openssh-lpk definition; overlays memberof
and ppolicy; ``olcLastBind`` so binds record ``authTimestamp``), loads the base tree (and
any extra LDIF, e.g. 20,000 bench entries) with ``slapadd -n1``, and starts ``slapd`` on a
free loopback port. It is a plain function so that the bench and the daemon tests can reuse
it; ``slapd_server`` is the session fixture built on it.

Identities in the tree (all passwords below are test-only):

- ``cn=admin,<base>``: the database rootdn (no limits, no ACLs).
- ``cn=auditor,ou=services,<base>``: read-only service identity whose ``olcLimits`` allow
  full paged reads (``size.prtotal=unlimited``), as the README tells real directories to do.
- ``cn=limited,ou=services,<base>``: read-only, with the server's default size limit of 500,
  to prove truncation is detected.
- ``cn=revoker,ou=services,<base>``: may write (lock accounts, edit groups and keys).
- ``uid=breakglass,ou=people,<base>``: the break-glass account the revoker must refuse.

Referral objects (``objectClass: referral`` + ``extensibleObject``, ``ref: ldap://...``) are
added and deleted with the ManageDsaIT control (``add_entries(..., manage_dsa_it=True)``,
``delete_entry``), as ``ldapadd -M`` does: without it slapd answers with the referral itself.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.lifetime import die_with_parent
from tests.support.ports import free_port, wait_for_port

BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret"
AUDITOR_DN = f"cn=auditor,ou=services,{BASE_DN}"
AUDITOR_PASSWORD = "auditor-secret"
LIMITED_DN = f"cn=limited,ou=services,{BASE_DN}"
LIMITED_PASSWORD = "limited-secret"
REVOKER_DN = f"cn=revoker,ou=services,{BASE_DN}"
REVOKER_PASSWORD = "revoker-secret"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
SERVICES_DN = f"ou=services,{BASE_DN}"

# RFC 3296 ManageDsaIT: treat referral objects as ordinary entries (add, delete them).
MANAGE_DSA_IT = ("2.16.840.1.113730.3.4.2", True, None)

SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

# The openssh-lpk schema is not shipped by Debian; this is its usual definition.
OPENSSH_LPK = """\
dn: cn=openssh-lpk,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: openssh-lpk
olcAttributeTypes: ( 1.3.6.1.4.1.24552.500.1.1.1.13 NAME 'sshPublicKey'
  DESC 'OpenSSH public key' EQUALITY octetStringMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
olcObjectClasses: ( 1.3.6.1.4.1.24552.500.1.1.2.0 NAME 'ldapPublicKey' SUP top AUXILIARY
  DESC 'OpenSSH LPK objectclass' MAY ( sshPublicKey $ uid ) )
"""


class MissingPackageError(RuntimeError):
    """A system binary the real-server tests need is not installed."""


def _require(binary: str, package: str) -> str:
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise MissingPackageError(
            f"{binary} not found: install the Debian package {package!r} "
            f"(scripts/install-test-deps.sh does: apt-get install -y {package})"
        )
    return found


def _config_ldif(workdir: Path, tls: tuple[Path, Path] | None) -> str:
    tls_lines = ""
    if tls is not None:
        cert, key = tls
        tls_lines = f"olcTLSCertificateFile: {cert}\nolcTLSCertificateKeyFile: {key}\n"
    schemas = "".join(
        f"include: file://{SCHEMA_DIR / name}.ldif\n\n" for name in ("core", "cosine", "nis", "inetorgperson")
    )
    return f"""\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {workdir}/slapd.pid
olcArgsFile: {workdir}/slapd.args
{tls_lines}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULE_DIR}
olcModuleLoad: back_mdb
olcModuleLoad: memberof
olcModuleLoad: ppolicy

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}{OPENSSH_LPK}
dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: 500

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {workdir}/db
olcSuffix: {BASE_DN}
olcRootDN: {ADMIN_DN}
olcRootPW: {ADMIN_PASSWORD}
olcDbNoSync: TRUE
olcDbMaxSize: 4294967296
olcLastBind: TRUE
olcDbIndex: objectClass eq
olcDbIndex: uid,mail,employeeNumber,cn eq
olcDbIndex: member,uniqueMember,memberUid eq
olcSizeLimit: 500
olcLimits: {{0}}dn.exact="{AUDITOR_DN}" size.soft=unlimited size.hard=unlimited size.prtotal=unlimited
olcLimits: {{1}}dn.exact="{REVOKER_DN}" size.soft=unlimited size.hard=unlimited size.prtotal=unlimited
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by dn.exact="{REVOKER_DN}" write by users read by * none

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {{0}}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf

dn: olcOverlay={{1}}ppolicy,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {{1}}ppolicy
olcPPolicyDefault: cn=default,ou=policies,{BASE_DN}
olcPPolicyUseLockout: TRUE
"""


def _base_tree_ldif() -> str:
    def service(dn: str, cn: str, password: str) -> str:
        return (
            f"dn: {dn}\nobjectClass: person\nobjectClass: simpleSecurityObject\n"
            f"cn: {cn}\nsn: {cn}\nuserPassword: {password}\n\n"
        )

    return (
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n"
        f"dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n"
        f"dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n\n"
        f"dn: {SERVICES_DN}\nobjectClass: organizationalUnit\nou: services\n\n"
        f"dn: ou=policies,{BASE_DN}\nobjectClass: organizationalUnit\nou: policies\n\n"
        f"dn: cn=default,ou=policies,{BASE_DN}\nobjectClass: pwdPolicy\nobjectClass: person\n"
        f"cn: default\nsn: default\npwdAttribute: userPassword\npwdLockout: TRUE\n\n"
        + service(AUDITOR_DN, "auditor", AUDITOR_PASSWORD)
        + service(LIMITED_DN, "limited", LIMITED_PASSWORD)
        + service(REVOKER_DN, "revoker", REVOKER_PASSWORD)
    )


def _write_ldif(path: Path, entries: Sequence[tuple[str, Mapping[str, Sequence[str]]]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for dn, attrs in entries:
            out.write(f"dn: {dn}\n")
            for name, values in attrs.items():
                for value in values:
                    out.write(f"{name}: {value}\n")
            out.write("\n")


def make_tls_files(workdir: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``host``: returns (ca, cert, key) paths."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "offboard-audit test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName(host)]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = workdir / "ca.pem", workdir / "server.pem", workdir / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@dataclass
class SlapdServer:
    """A running slapd. ``stop()`` ends it (and is safe to call twice)."""

    workdir: Path
    port: int
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    base_dn: str = BASE_DN
    admin_dn: str = ADMIN_DN
    admin_password: str = ADMIN_PASSWORD
    ca_file: Path | None = None
    ldaps_port: int | None = None
    _added: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    @property
    def ldaps_url(self) -> str:
        if self.ldaps_port is None:
            raise RuntimeError("this slapd was started without TLS")
        return f"ldaps://{self.host}:{self.ldaps_port}"

    def connect(self, dn: str | None = None, password: str | None = None) -> object:
        """An ldap3 connection bound as ``dn`` (default: the admin)."""
        import ldap3

        server = ldap3.Server(self.host, port=self.port, get_info=ldap3.NONE)
        return ldap3.Connection(
            server,
            user=dn or self.admin_dn,
            password=password if password is not None else self.admin_password,
            auto_bind=True,
            raise_exceptions=True,
        )

    def add_entries(
        self,
        entries: Sequence[tuple[str, Mapping[str, Sequence[str | bytes]]]],
        manage_dsa_it: bool = False,
    ) -> None:
        """Add entries over LDAP as the admin (parents first); ``manage_dsa_it`` for referral objects."""
        conn = self.connect()
        controls = [MANAGE_DSA_IT] if manage_dsa_it else None
        try:
            for dn, attrs in entries:
                conn.add(dn, attributes={k: list(v) for k, v in attrs.items()}, controls=controls)  # type: ignore[attr-defined]
                self._added.append(dn)
        finally:
            conn.unbind()  # type: ignore[attr-defined]

    def delete_entry(self, dn: str) -> None:
        """Delete one entry (an ordinary entry or a referral object) as the admin."""
        conn = self.connect()
        try:
            conn.delete(dn, controls=[MANAGE_DSA_IT])  # type: ignore[attr-defined]
        finally:
            conn.unbind()  # type: ignore[attr-defined]

    def delete_added(self) -> None:
        """Delete what ``add_entries`` added (children first) so that tests can share a server."""
        import ldap3

        conn = self.connect()
        try:
            for dn in reversed(self._added):
                with contextlib.suppress(ldap3.core.exceptions.LDAPNoSuchObjectResult):
                    # ManageDsaIT: a referral object is deleted, not answered with its referral.
                    conn.delete(dn, controls=[MANAGE_DSA_IT])  # type: ignore[attr-defined]
            self._added.clear()
        finally:
            conn.unbind()  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_slapd(
    workdir: Path,
    extra_ldif: Path | None = None,
    extra_entries: Sequence[tuple[str, Mapping[str, Sequence[str]]]] = (),
    tls: bool = False,
    host: str = "127.0.0.1",
) -> SlapdServer:
    """Build a fresh slapd in ``workdir`` and start it on a free port of ``host``.

    ``extra_ldif``/``extra_entries`` are loaded offline with ``slapadd`` before the start
    (fast: the bench loads 20,000 entries this way). With ``tls`` the server also listens
    on ldaps:// and accepts StartTLS with a throwaway CA (``server.ca_file``).
    """
    slapd = _require("slapd", "slapd")
    slapadd = _require("slapadd", "slapd")
    for name in ("core", "cosine", "nis", "inetorgperson"):
        if not (SCHEMA_DIR / f"{name}.ldif").exists():
            raise MissingPackageError(f"{SCHEMA_DIR}/{name}.ldif missing: install the Debian package 'slapd'")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir(exist_ok=True)
    confdir = workdir / "slapd.d"
    confdir.mkdir(exist_ok=True)

    ca_file: Path | None = None
    tls_files: tuple[Path, Path] | None = None
    if tls:
        ca_file, cert, key = make_tls_files(workdir, host)
        tls_files = (cert, key)

    config = workdir / "config.ldif"
    config.write_text(_config_ldif(workdir, tls_files), encoding="utf-8")
    _run([slapadd, "-n0", "-F", str(confdir), "-l", str(config)])

    base = workdir / "base.ldif"
    base.write_text(_base_tree_ldif(), encoding="utf-8")
    if extra_entries:
        extra = workdir / "extra.ldif"
        _write_ldif(extra, extra_entries)
        with base.open("a", encoding="utf-8") as out:
            out.write(extra.read_text(encoding="utf-8"))
    # -q: quick mode (no consistency checks), fine for a throwaway database.
    _run([slapadd, "-q", "-n1", "-F", str(confdir), "-l", str(base)])
    if extra_ldif is not None:
        _run([slapadd, "-q", "-n1", "-F", str(confdir), "-l", str(extra_ldif)])

    port = free_port(host)
    urls = [f"ldap://{host}:{port}/"]
    ldaps_port = None
    if tls:
        ldaps_port = free_port(host)
        urls.append(f"ldaps://{host}:{ldaps_port}/")
    log = (workdir / "slapd.log").open("wb")
    # -d 0: stay in the foreground (so the fixture owns the process) without debug noise.
    process = subprocess.Popen(
        [slapd, "-F", str(confdir), "-h", " ".join(urls), "-d", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    server = SlapdServer(workdir, port, process, host=host, ca_file=ca_file, ldaps_port=ldaps_port)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: SlapdServer, timeout: float = 20.0) -> None:
    import ldap3

    deadline = time.monotonic() + timeout
    wait_for_port(server.host, server.port, timeout)
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = (server.workdir / "slapd.log").read_text(errors="replace")
            raise RuntimeError(f"slapd exited with {server.process.returncode}:\n{log}")
        try:
            conn = server.connect()
            conn.unbind()  # type: ignore[attr-defined]
            return
        except ldap3.core.exceptions.LDAPException as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"slapd on {server.url} did not accept a bind: {last}")


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="session")
def slapd_server() -> Iterator[SlapdServer]:
    """One slapd (with TLS) for the whole session; tests clean up what they add."""
    workdir = Path(tempfile.mkdtemp(prefix="offboard-slapd-"))
    server = start_slapd(workdir, tls=True)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def slapd(slapd_server: SlapdServer) -> Iterator[SlapdServer]:
    """The session slapd; entries a test adds with ``add_entries`` are deleted afterwards."""
    try:
        yield slapd_server
    finally:
        slapd_server.delete_added()


__all__ = [
    "ADMIN_DN",
    "ADMIN_PASSWORD",
    "AUDITOR_DN",
    "AUDITOR_PASSWORD",
    "BASE_DN",
    "GROUPS_DN",
    "LIMITED_DN",
    "LIMITED_PASSWORD",
    "MANAGE_DSA_IT",
    "PEOPLE_DN",
    "REVOKER_DN",
    "REVOKER_PASSWORD",
    "SERVICES_DN",
    "MissingPackageError",
    "SlapdServer",
    "make_tls_files",
    "start_slapd",
]
