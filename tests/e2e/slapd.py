"""A throwaway OpenLDAP server for tests: an ordinary process on free loopback ports.

Why: directory logins must be tested against a real directory, because filter escaping,
binds, StartTLS and certificate checks are the server's behaviour as much as ours.
Everything lives in one 0700 temporary folder: cn=config written by ``slapadd -n0``, an
mdb database, a throwaway CA and a server certificate for 127.0.0.1 and localhost, the
log. On exit slapd is stopped and waited for and the folder is deleted. Even when pytest
is SIGKILLed nothing stays: slapd runs under ``setpriv --pdeathsig KILL``, and a guard
shell in its own session deletes the folder when its stdin pipe from pytest closes.

Checked on Debian 12 (OpenLDAP 2.5.13, GnuTLS):

- ``slapd -d LEVEL`` stays in the foreground and logs to stderr; ``stats`` logs each
  connection and operation (``BIND dn=...``, ``SRCH ... filter=...``, ``STARTTLS``),
  which is how tests see what reached the server. It prints ``slapd starting`` when it
  serves.
- The client tools read ``/etc/ldap/ldap.conf`` and ``~/.ldaprc``: ``LDAPNOINIT=1``
  keeps them out. ``ldapadd -y FILE`` takes the whole file as the password, a trailing
  newline included; so does ``slappasswd -T FILE``.
- Values are written base64-encoded (``attr:: ...``), so that newlines, control
  characters and 10,000-character values reach the server unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SLAPPASSWD = "/usr/sbin/slappasswd"
CLIENT_TOOLS = ("ldapadd", "setpriv")
SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
MODULE_DIR = "/usr/lib/ldap"
START_TIMEOUT = 10.0
PORT_ATTEMPTS = 3

Value = str | bytes
Values = Value | Sequence[Value] | None


def missing_tools() -> list[str]:
    """What this machine lacks to run a throwaway slapd (empty: all there)."""
    missing = [tool for tool in (SLAPD, SLAPADD, SLAPPASSWD) if not os.access(tool, os.X_OK)]
    missing += [tool for tool in CLIENT_TOOLS if shutil.which(tool) is None]
    missing += [str(SCHEMA_DIR / f"{name}.ldif") for name in SCHEMAS
                if not (SCHEMA_DIR / f"{name}.ldif").is_file()]
    if not Path(MODULE_DIR, "back_mdb.so").exists():
        missing.append(f"{MODULE_DIR}/back_mdb.so")
    return missing


# -- certificates ----------------------------------------------------------------------
def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class ThrowawayCA:
    """A one-day CA in memory that issues TLS server certificates."""

    def __init__(self, name: str = "Throwaway LDAP Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        public = self.key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, dns_names: Sequence[str] = ("localhost",),
              ip_addresses: Sequence[str] = ("127.0.0.1",)) -> tuple[bytes, bytes]:
        """A server certificate and its key, both PEM, for exactly these names."""
        key = ec.generate_private_key(ec.SECP256R1())
        first = (list(dns_names) + list(ip_addresses))[0]
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


# -- LDIF ------------------------------------------------------------------------------
def _as_list(values: Values) -> list[bytes]:
    if values is None:
        return []
    if isinstance(values, str | bytes):
        values = [values]
    return [v.encode() if isinstance(v, str) else bytes(v) for v in values]


def ldif_record(dn: str, attrs: Mapping[str, Values]) -> str:
    """One LDIF record, every value base64-encoded (safe for any bytes)."""
    lines = [f"dn:: {base64.b64encode(dn.encode()).decode()}"]
    for name, values in attrs.items():
        lines += [f"{name}:: {base64.b64encode(v).decode()}" for v in _as_list(values)]
    return "\n".join(lines) + "\n\n"


def escape_rdn_value(value: str) -> str:
    """An RDN value escaped as RFC 4514 asks (uids with ``*`` need nothing)."""
    out = "".join("\\" + ch if ch in '\\,+"<>;=' else ch for ch in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    return out


def ssha(password: str) -> str:
    """An OpenLDAP {SSHA} userPassword, as ``slappasswd`` would write it."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the server ------------------------------------------------------------------------
class Slapd:
    """A running slapd with a suffix, ``ou=people``, ``ou=groups`` and a read-only
    service account (``reader_dn``). ``tls=False`` gives a server without any TLS (for
    StartTLS refusal tests); ``anonymous_read=False`` hides every entry from anonymous
    searches (binds still work); ``server_names`` are the names (DNS or IP) in the server
    certificate."""

    def __init__(self, base_dn: str = "dc=grid,dc=example", *, tls: bool = True,
                 anonymous_read: bool = True,
                 server_names: Sequence[str] = ("localhost", "127.0.0.1")) -> None:
        self.base_dn = base_dn
        self.tls = tls
        self.anonymous_read = anonymous_read
        self.server_names = tuple(server_names)
        self.bind_dn = f"cn=admin,{base_dn}"
        self.bind_password = secrets.token_urlsafe(16)
        self.reader_dn = f"cn=reader,{base_dn}"
        self.reader_password = secrets.token_urlsafe(16)
        self.people_dn = f"ou=people,{base_dn}"
        self.groups_dn = f"ou=groups,{base_dn}"
        self.ca = ThrowawayCA()
        self.dir: Path | None = None
        self.port = self.ldaps_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._guard: subprocess.Popen[bytes] | None = None

    # -- addresses -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        if not self.tls:
            raise RuntimeError("this slapd has no TLS")
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ca_cert_path(self) -> str:
        return str(self._path("ca.pem"))

    def _path(self, name: str) -> Path:
        if self.dir is None:
            raise RuntimeError("slapd is not running")
        return self.dir / name

    def user_dn(self, uid: str) -> str:
        return f"uid={escape_rdn_value(uid)},{self.people_dn}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("slapd is not running")
        return self._proc.pid

    def log_text(self) -> str:
        """Everything slapd has logged so far (``stats`` level)."""
        return self._path("slapd.log").read_text(errors="replace")

    # -- life cycle ----------------------------------------------------------------------
    def __enter__(self) -> Slapd:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        missing = missing_tools()
        if missing:
            raise RuntimeError(f"cannot run slapd, missing: {', '.join(missing)}")
        self.dir = Path(tempfile.mkdtemp(prefix="xos-slapd-"))  # mkdtemp makes it 0700
        self._guard = subprocess.Popen(
            ["sh", "-c", 'cat >/dev/null; rm -rf -- "$0"', str(self.dir)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # its own session: Ctrl-C must not end it early
        self._write_files()
        for _ in range(PORT_ATTEMPTS):
            self.port, self.ldaps_port = free_port(), free_port()
            if self._launch():
                break
        else:
            raise RuntimeError(f"slapd found no free port:\n{self.log_text()[-3000:]}")
        self._wait_ready()
        self._load_base()

    def stop(self) -> None:
        """Stop slapd (SIGTERM, SIGKILL after 5 s), wait for it, delete the folder."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        guard, self._guard = self._guard, None
        if guard is not None and guard.stdin is not None:
            guard.stdin.close()  # the guard deletes the folder and ends
            try:
                guard.wait(5)
            except subprocess.TimeoutExpired:
                guard.kill()
                guard.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- setting up ----------------------------------------------------------------------
    def _write(self, name: str, data: bytes, mode: int = 0o600) -> Path:
        path = self._path(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return path

    def _write_files(self) -> None:
        self._write("ca.pem", self.ca.cert_pem, 0o644)
        cert, key = self.ca.issue(
            dns_names=[n for n in self.server_names if not _is_ip(n)],
            ip_addresses=[n for n in self.server_names if _is_ip(n)])
        self._write("server.pem", cert, 0o644)
        self._write("server.key", key)
        self._write("rootpw", self.bind_password.encode())
        for name in ("slapd.d", "db"):
            self._path(name).mkdir(mode=0o700)
        hashed = self._run([SLAPPASSWD, "-h", "{SSHA}", "-T", str(self._path("rootpw"))])
        self._write("config.ldif", self._config_ldif(hashed.strip()).encode())
        self._run([SLAPADD, "-n0", "-F", str(self._path("slapd.d")),
                   "-l", str(self._path("config.ldif"))])

    def _config_ldif(self, root_hash: str) -> str:
        d = self._path("")
        tls = (f"olcTLSCACertificateFile: {d / 'ca.pem'}\n"
               f"olcTLSCertificateFile: {d / 'server.pem'}\n"
               f"olcTLSCertificateKeyFile: {d / 'server.key'}\n") if self.tls else ""
        schemas = "".join((SCHEMA_DIR / f"{name}.ldif").read_text().rstrip("\n") + "\n\n"
                          for name in SCHEMAS)
        everyone = "by users read by anonymous read" if self.anonymous_read \
            else "by users read by * none"
        return (
            "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n"
            f"olcPidFile: {d / 'slapd.pid'}\nolcArgsFile: {d / 'slapd.args'}\n{tls}\n"
            "dn: cn=module{0},cn=config\nobjectClass: olcModuleList\ncn: module{0}\n"
            f"olcModulePath: {MODULE_DIR}\nolcModuleLoad: back_mdb\n\n"
            "dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n"
            f"{schemas}"
            "dn: olcDatabase={-1}frontend,cn=config\nobjectClass: olcDatabaseConfig\n"
            "objectClass: olcFrontendConfig\nolcDatabase: {-1}frontend\n\n"
            "dn: olcDatabase={0}config,cn=config\nobjectClass: olcDatabaseConfig\n"
            "olcDatabase: {0}config\nolcAccess: {0}to * by * none\n\n"
            "dn: olcDatabase={1}mdb,cn=config\nobjectClass: olcDatabaseConfig\n"
            "objectClass: olcMdbConfig\nolcDatabase: {1}mdb\n"
            f"olcDbDirectory: {d / 'db'}\nolcDbMaxSize: 16777216\n"
            f"olcSuffix: {self.base_dn}\nolcRootDN: {self.bind_dn}\nolcRootPW: {root_hash}\n"
            "olcDbIndex: objectClass eq\nolcDbIndex: uid eq,sub\n"
            "olcAccess: {0}to attrs=userPassword by self write by anonymous auth by * none\n"
            f"olcAccess: {{1}}to * {everyone}\n\n"
        )

    def _launch(self) -> bool:
        """Start slapd; False when it died at once because a port was taken."""
        urls = f"ldap://127.0.0.1:{self.port}/"
        if self.tls:
            urls += f" ldaps://127.0.0.1:{self.ldaps_port}/"
        log = self._path("slapd.log").open("wb")
        with log:
            self._proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", SLAPD, "-F", str(self._path("slapd.d")),
                 "-h", urls, "-d", "stats"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if "slapd starting" in self.log_text():
                return True
            if self._proc.poll() is not None:
                self._proc = None
                if "Address already in use" in self.log_text():
                    return False
                break
            time.sleep(0.01)
        raise RuntimeError(f"slapd did not start:\n{self.log_text()[-3000:]}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        ports = (self.port, self.ldaps_port) if self.tls else (self.port,)
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"slapd does not accept connections on {port}:\n"
                                           f"{self.log_text()[-3000:]}") from None
                    time.sleep(0.01)

    def _load_base(self) -> None:
        top = self.base_dn.split(",")[0].partition("=")[2]
        self.add_ldif(
            ldif_record(self.base_dn, {"objectClass": ["dcObject", "organization"],
                                       "dc": top, "o": top})
            + ldif_record(self.people_dn, {"objectClass": "organizationalUnit",
                                           "ou": "people"})
            + ldif_record(self.groups_dn, {"objectClass": "organizationalUnit",
                                           "ou": "groups"})
            + ldif_record(self.reader_dn, {
                "objectClass": ["organizationalRole", "simpleSecurityObject"],
                "cn": "reader", "userPassword": ssha(self.reader_password)}))

    # -- entries -------------------------------------------------------------------------
    def _run(self, argv: list[str], stdin: bytes | None = None) -> str:
        env = {**os.environ, "LDAPNOINIT": "1"}
        done = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=30,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): "
                               f"{done.stderr.decode(errors='replace')[-2000:]}")
        return done.stdout.decode()

    def add_ldif(self, ldif: str) -> None:
        """Add LDIF records as the root DN (over loopback, without TLS: test data only)."""
        self._run(["ldapadd", "-x", "-H", self.url, "-D", self.bind_dn,
                   "-y", str(self._path("rootpw"))], ldif.encode())

    def add_user(self, uid: str, password: str | None, cn: Values, mail: Values = None,
                 **attrs: Values) -> str:
        """An inetOrgPerson under ou=people; any value may be a list (multi-valued) or
        None (absent). Returns its DN."""
        dn = self.user_dn(uid)
        entry: dict[str, Values] = {
            "objectClass": "inetOrgPerson", "uid": uid, "cn": cn,
            "sn": attrs.pop("sn", None) or cn, "mail": mail,
            "userPassword": ssha(password) if password else None, **attrs}
        self.add_ldif(ldif_record(dn, entry))
        return dn

    def add_group(self, cn: str, members: Sequence[str]) -> str:
        """A groupOfNames under ou=groups with these uids as members. Returns its DN."""
        if not members:
            raise ValueError("a groupOfNames needs at least one member")
        dn = f"cn={escape_rdn_value(cn)},{self.groups_dn}"
        self.add_ldif(ldif_record(dn, {"objectClass": "groupOfNames", "cn": cn,
                                       "member": [self.user_dn(uid) for uid in members]}))
        return dn
