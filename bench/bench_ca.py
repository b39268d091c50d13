"""Benchmark of the certificate authority: our ``ca/`` library and the VO service against
openssl 3 (the peer), side by side on the same machine, in one run.

    .venv/bin/python bench/bench_ca.py            # default sizes (100,000 revoked serials)
    .venv/bin/python bench/bench_ca.py --quick    # about two minutes on a quiet machine
    .venv/bin/python bench/bench_ca.py --rev worktree   # the files as they are, not HEAD

The code measured is ``ca`` and ``vo_service`` of commit ``--rev`` (default HEAD), exported
into a temporary folder, so that edits to the working tree during a run change nothing.

1. Issuance on one core, single-threaded: ``ca.issue_user_certificate`` in this process
   (an IssuingCA from ``ca.create_root``/``ca.create_issuing``, CSRs made beforehand)
   against ``openssl x509 -req -CA issuing.pem -CAkey issuing.key``, one process per
   certificate (process start-up is part of that cost; ``openssl version`` alone is timed
   too), and against ``openssl ca -batch -infiles ...``, all certificates in one process
   (minimal openssl.cnf and index.txt): the fair comparison. Both peers add the same
   extensions as our CA (the XOS VO attributes as raw DER) and sign with the same kind of
   key (P-256, ECDSA-SHA256).
2. Issuance over HTTP: the VO service under gunicorn (one sync worker, 127.0.0.1) on a
   migrated SQLite database in a temporary folder, a CA made by
   ``CADirectory.init(<instance>/ca, "Bench", passphrase)`` with XOS_CA_PASSPHRASE set,
   one VO with one active member and their API key (made through the services), then
   ``POST /api/v1/certificates/xos`` with CSRs made beforehand, from 1 and from 2 clients.
3. CRLs with ``--revoked`` (100,000) revoked serials, a third with reason superseded, the
   same entries everywhere: ``ca.build_crl`` (and DER encoding) in this process against
   ``openssl ca -gencrl`` over an index.txt of the same entries; then the service: the
   rows bulk-inserted into ``certificates`` (kind x509-user, issuer 1) and
   ``GET /ca/crl.der`` timed cold (CRLPublisher rebuilds; the ``revocations`` counter is
   bumped before each cold run) and warm (the stored CRL).
4. OCSP: ``POST /ocsp`` to the service against the ``openssl ocsp -index index.txt``
   responder (same issuing key and certificate, the same revoked entries plus the
   certificate asked about, ``-nmin 60 -resp_key_id -resp_no_certs`` as our answers)
   with the same requests (built with ``ocsp.OCSPRequestBuilder`` for a certificate the
   service issued, with nonces), a new connection per request for both; and
   ``ca.answer_ocsp`` in this process.

Every loop is bounded by a count and a time budget, and waits (at most ``--quiet-wait``
seconds) for a quiet machine first; the machine-wide CPU busy % during each measurement
is recorded. Everything started is stopped and the temporary folder removed at the end,
also on Ctrl-C and SIGTERM. Figures go to stdout and to ``bench/results/ca-<time>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import resource
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cryptography
import flask_migrate
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from frozen import code_under_test, is_frozen_run, run_frozen
from measure import (
    QUIET_WAIT,
    RESULTS,
    WARMUP,
    HttpClient,
    Stats,
    busy_since,
    cpu_counters,
    free_port,
    gunicorn,
    machine_basics,
    save_results,
    wait_quiet,
)

import ca
import vo_service
from ca.directory import CADirectory
from vo_service import create_app
from vo_service.apikeys.services import ApiKeyService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.pki.models import IssuedCertificate
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

# The service refuses to start without a form-signing secret; any will do here.
os.environ.setdefault("XOS_SECRET_KEY", "benchmark secret key, not for production use")
ROOT = Path(__file__).resolve().parent.parent
OPENSSL = shutil.which("openssl", path="/usr/bin:/usr/local/bin") or "openssl"
USER_LIFETIME = dt.timedelta(hours=12)
VO = "bench"
PUBLIC_URL = "http://127.0.0.1:8080"  # the service's default, written into certificates
CRL_URL, OCSP_URL = f"{PUBLIC_URL}/ca/crl/1.der", f"{PUBLIC_URL}/ocsp"
NONCES = 50  # distinct OCSP requests (nonces), used in turn


# -- measuring ------------------------------------------------------------------------
@dataclass
class Run:
    """One measured loop: how many operations, wall and CPU time, and the machine's load."""

    n: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu_self: float = 0.0  # CPU seconds of this process
    cpu_children: float = 0.0  # CPU seconds of the child processes waited for
    latency: Stats = field(default_factory=Stats)

    def summary(self) -> dict[str, Any]:
        cpu = self.cpu_self + self.cpu_children
        return {"n": self.n, "errors": self.errors, "seconds": self.seconds,
                "per_second": self.n / self.seconds if self.seconds else float("nan"),
                "cpu_self_s": self.cpu_self, "cpu_children_s": self.cpu_children,
                "per_cpu_second": self.n / cpu if cpu else float("nan"),
                "latency_ms": self.latency.summary()}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def measuring(quiet_wait: float) -> Iterator[Run]:
    """Wait for a quiet machine, then record wall time, CPU time and machine load."""
    run = Run()
    run.latency.waited = wait_quiet(quiet_wait)
    mark, own, kids = cpu_counters(), time.process_time(), children_cpu()
    started = time.perf_counter()
    try:
        yield run
    finally:
        run.seconds = time.perf_counter() - started
        run.cpu_self = time.process_time() - own
        run.cpu_children = children_cpu() - kids
        run.latency.busy = busy_since(mark)


def loop(call: Callable[[int], Any], count: int, seconds: float, quiet_wait: float,
         warmup: int = WARMUP) -> Run:
    """``call(i)`` for i < warmup untimed, then for warmup <= i < warmup + count until
    ``seconds`` are spent; one at a time."""
    for i in range(warmup):
        call(i)
    with measuring(quiet_wait) as run:
        deadline = time.perf_counter() + seconds
        for i in range(warmup, warmup + count):
            started = time.perf_counter()
            if i > warmup and started > deadline:
                break
            call(i)
            run.latency.add(time.perf_counter() - started)
            run.n += 1
    return run


def described(name: str, run: Run, **extra: Any) -> dict[str, Any]:
    s = run.summary()
    lat = s["latency_ms"]
    print(f"  {name}: n {s['n']}, {s['per_second']:,.1f}/s, p50 {lat['p50']:.2f} ms, "
          f"p99 {lat['p99']:.2f} ms, machine busy {lat['busy_pct']:.0f} %"
          + (f" (waited {lat['waited_s']:.0f} s for quiet)" if lat["waited_s"] >= 1 else ""),
          flush=True)
    return {"name": name, **s, **extra}


def openssl(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True,
                          timeout=timeout)


# -- the code under test --------------------------------------------------------------
# -- inputs ---------------------------------------------------------------------------
def make_csrs(count: int, prefix: str) -> list[bytes]:
    """PEM CSRs with P-256 keys, no extensions, subject O=XOS, OU=bench, CN=<prefix><i>."""
    out = []
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "XOS"),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, VO),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix}{i}")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
            key, hashes.SHA256())
        out.append(csr.public_bytes(serialization.Encoding.PEM))
    return out


def write_key_and_chain(folder: Path, issuing: ca.IssuingCA) -> tuple[Path, Path, Path]:
    """issuing.pem, issuing.key (unencrypted, 0600) and chain.pem for openssl."""
    pem = serialization.Encoding.PEM
    ca.write_private(folder / "issuing.key", issuing.key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ca.write_public(folder / "issuing.pem", issuing.certificate.public_bytes(pem))
    ca.write_public(folder / "chain.pem", b"".join(c.public_bytes(pem) for c in issuing.chain))
    return folder / "issuing.pem", folder / "issuing.key", folder / "chain.pem"


def extension_section(attributes: ca.VOAttributes) -> str:
    """The extensions our CA puts in a user certificate, for openssl (the subject comes
    from the CSR, which already has the same shape)."""
    return "\n".join([
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature",
        "extendedKeyUsage = clientAuth",
        "subjectKeyIdentifier = hash",
        "authorityKeyIdentifier = keyid",
        f"subjectAltName = URI:urn:uuid:{attributes.global_user_id}",
        f"crlDistributionPoints = URI:{CRL_URL}",
        f"authorityInfoAccess = OCSP;URI:{OCSP_URL}",
        f"{ca.XOS_VO_ATTRIBUTES_OID.dotted_string} = DER:{attributes.to_der().hex()}",
    ]) + "\n"


def openssl_ca_config(folder: Path, key: Path, cert: Path, extensions: str) -> Path:
    """A minimal openssl.cnf for ``openssl ca``: its own index.txt, random serials."""
    (folder / "certs").mkdir(parents=True)
    (folder / "index.txt").write_text("")
    (folder / "crlnumber").write_text("01\n")
    config = folder / "openssl.cnf"
    config.write_text(f"""[ca]
default_ca = bench
[bench]
database = {folder}/index.txt
new_certs_dir = {folder}/certs
certificate = {cert}
private_key = {key}
rand_serial = yes
crlnumber = {folder}/crlnumber
default_md = sha256
default_days = 1
default_crl_days = 1
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
preserve = yes
x509_extensions = user
crl_extensions = crl
[anything]
organizationName = optional
organizationalUnitName = optional
commonName = supplied
[crl]
authorityKeyIdentifier = keyid
[user]
{extensions}""")
    return config


def utc_time(moment: dt.datetime) -> str:
    return moment.strftime("%y%m%d%H%M%SZ")


def index_lines(revoked: list[ca.Revoked], expiry: dt.datetime) -> str:
    """openssl's index.txt rows for revoked serials: status, expiry, revocation[,reason],
    serial (upper-case hex, even length), file name, subject."""
    lines = []
    for r in revoked:
        serial = format(r.serial, "X")
        serial = "0" * (len(serial) % 2) + serial
        when = utc_time(r.revoked_at) + (f",{r.reason.value}" if r.reason else "")
        lines.append(f"R\t{utc_time(expiry)}\t{when}\t{serial}\tunknown\t/CN=x\n")
    return "".join(lines)


def revoked_entries(count: int, rng: random.Random) -> list[ca.Revoked]:
    """Distinct random 159-bit serials, revoked a day ago; a third with reason superseded."""
    moment = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    serials: set[int] = set()
    while len(serials) < count:
        serials.add(rng.getrandbits(159) | 1 << 150)
    return [ca.Revoked(s, moment, x509.ReasonFlags.superseded if i % 3 == 0 else None)
            for i, s in enumerate(serials)]


def extension_oids(cert: x509.Certificate) -> list[str]:
    return sorted(e.oid.dotted_string for e in cert.extensions)


# -- 1. issuance in this process and by openssl -------------------------------------------
def issuance(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    print("1. issuing on one core (single-threaded):", flush=True)
    root_key, root = ca.create_root("Bench Root CA")
    key, cert = ca.create_issuing(root_key, root, "Bench Issuing CA 1")
    issuing = ca.IssuingCA(key=key, certificate=cert, chain=(cert, root), crl_url=CRL_URL,
                           ocsp_url=OCSP_URL)
    attributes = ca.VOAttributes(global_user_id=uuid.uuid4(), primary_vo=VO, other_vos=(),
                                 primary_group=f"/{VO}", other_groups=(), roles=())
    folder = work / "issue"
    folder.mkdir()
    cert_pem, key_pem, _ = write_key_and_chain(folder, issuing)
    total = WARMUP + max(args.issue, args.issue_processes)
    csrs = make_csrs(total, "user")
    csr_files = []
    for i, pem in enumerate(csrs):
        path = folder / f"req{i:06d}.csr"
        path.write_bytes(pem)
        csr_files.append(path)
    extfile = folder / "ext.cnf"
    extfile.write_text("[user]\n" + extension_section(attributes))
    rng = random.Random(args.seed)
    serials = [f"0x{rng.getrandbits(159) | 1 << 150:x}" for _ in range(total)]
    ours: list[x509.Certificate] = []

    def issue(i: int) -> None:
        ours.append(ca.issue_user_certificate(issuing, csrs[i], username=f"user{i}",
                                              attributes=attributes, lifetime=USER_LIFETIME))

    def per_process(i: int) -> None:
        openssl("x509", "-req", "-in", csr_files[i], "-CA", cert_pem, "-CAkey", key_pem,
                "-days", "1", "-sha256", "-extfile", extfile, "-extensions", "user",
                "-set_serial", serials[i], "-out", folder / f"x509-{i:06d}.pem")

    results = [described("ours: ca.issue_user_certificate in-process",
                         loop(issue, args.issue, args.seconds, args.quiet_wait))]
    results.append(described("peer: openssl x509 -req, a process per certificate",
                             loop(per_process, args.issue_processes, args.seconds,
                                  args.quiet_wait)))
    results.append(described("peer: openssl version (process start-up alone)",
                             loop(lambda i: openssl("version"), args.issue_processes,
                                  args.seconds, args.quiet_wait)))

    # openssl ca: every certificate in one process (the index and each certificate file
    # are written too, as openssl ca always does).
    config = openssl_ca_config(folder / "ca", key_pem, cert_pem, extension_section(attributes))
    batch: list[str | Path] = ["ca", "-batch", "-config", config, "-notext", "-out",
                               folder / "batch.pem"]
    openssl(*batch, "-infiles", *csr_files[:WARMUP])
    count = args.issue
    with measuring(args.quiet_wait) as run:
        openssl(*batch, "-infiles", *csr_files[WARMUP:WARMUP + count],
                timeout=max(60, 10 * args.seconds))
        run.n = count
    run.latency.add(run.seconds)  # one process for all of them
    issued = len(list((folder / "ca" / "certs").glob("*.pem"))) - WARMUP
    if issued != count:
        raise RuntimeError(f"openssl ca wrote {issued} certificates, not {count}")
    results.append(described(f"peer: openssl ca -batch, {count} certificates in one process",
                             run))

    peer_x509 = x509.load_pem_x509_certificate((folder / "x509-000000.pem").read_bytes())
    peer_ca = x509.load_pem_x509_certificate(next((folder / "ca" / "certs").glob("*.pem"))
                                             .read_bytes())
    same = extension_oids(ours[0]) == extension_oids(peer_x509) == extension_oids(peer_ca)
    return {"runs": results, "same_extensions": same,
            "extensions": {"ours": extension_oids(ours[0]),
                           "openssl x509": extension_oids(peer_x509),
                           "openssl ca": extension_oids(peer_ca)},
            "certificate_bytes": {"ours": len(ours[0].public_bytes(serialization.Encoding.DER)),
                                  "openssl": len(peer_x509.public_bytes(
                                      serialization.Encoding.DER))},
            "issuing": issuing}


# -- 3a. CRLs in this process and by openssl -----------------------------------------------
def repeat(call: Callable[[], Any], runs: int, seconds: float, quiet_wait: float,
           before: Callable[[], Any] | None = None) -> Run:
    """Time ``call()`` up to ``runs`` times (at least once) within ``seconds``; each run
    waits for a quiet machine first, after ``before()`` (not timed)."""
    total, busy = Run(), []
    deadline = time.perf_counter() + seconds
    for i in range(runs):
        if i and time.perf_counter() > deadline:
            break
        if before is not None:
            before()
        with measuring(quiet_wait) as run:
            call()
        total.n += 1
        total.seconds += run.seconds
        total.cpu_self += run.cpu_self
        total.cpu_children += run.cpu_children
        total.latency.add(run.seconds)
        total.latency.waited += run.latency.waited
        busy.append(run.latency.busy)
    total.latency.busy = max(busy)  # the busiest run
    return total


def crl_runs(name: str, run: Run, size: int) -> dict[str, Any]:
    out = described(name, run)
    out["median_s"] = statistics.median(run.latency.samples) / 1000
    out["best_s"] = min(run.latency.samples) / 1000
    out["crl_bytes"] = size
    return out


def crls(args: argparse.Namespace, work: Path, issuing: ca.IssuingCA,
         revoked: list[ca.Revoked]) -> list[dict[str, Any]]:
    print(f"3. CRL of {len(revoked):,} revoked serials:", flush=True)
    folder = work / "crl"
    folder.mkdir()
    cert_pem, key_pem, _ = write_key_and_chain(folder, issuing)
    config = openssl_ca_config(folder, key_pem, cert_pem, "basicConstraints = CA:FALSE\n")
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    (folder / "index.txt").write_text(index_lines(revoked, expiry))
    sizes: dict[str, int] = {}

    def ours() -> None:
        now = dt.datetime.now(dt.UTC)
        crl = ca.build_crl(issuing, revoked, number=1, this_update=now,
                           next_update=now + dt.timedelta(days=1))
        sizes["ours"] = len(crl.public_bytes(serialization.Encoding.DER))

    def peer() -> None:
        openssl("ca", "-config", config, "-gencrl", "-out", folder / "crl.pem")

    results = [crl_runs("ours: ca.build_crl + DER in-process",
                        repeat(ours, args.crl_runs, args.seconds, args.quiet_wait),
                        sizes["ours"])]
    run = repeat(peer, args.crl_runs, args.seconds, args.quiet_wait)
    crl = x509.load_pem_x509_crl((folder / "crl.pem").read_bytes())
    if len(crl) != len(revoked):
        raise RuntimeError(f"openssl's CRL lists {len(crl)} serials, not {len(revoked)}")
    results.append(crl_runs("peer: openssl ca -gencrl (reads index.txt, writes PEM)", run,
                            len(crl.public_bytes(serialization.Encoding.DER))))
    return results


# -- 2. the service ----------------------------------------------------------------------
def migrate(url: str) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


def make_member(url: str) -> str:
    """A user who is an active member of one VO, and their API key, made by the services."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("bench")
        user = UserService(ctx).create(system, "benchuser", "Benchmark user",
                                       "benchuser@bench.example")
        vo = VOService(ctx).create(system, VO, "CA benchmark")
        MembershipService(ctx).add(system, vo, user)
        key = ApiKeyService(ctx).issue(system, user=user, description="CA benchmark")[1]
        db.session.commit()
        db.engine.dispose()
    return key


def post_certificates(port: int, key: str, csrs: list[bytes], count: int, seconds: float,
                      clients: int, quiet_wait: float) -> tuple[Run, list[dict[str, Any]]]:
    """POST /api/v1/certificates/xos from ``clients`` threads: WARMUP untimed requests
    first, then up to ``count`` (one CSR each) until ``seconds`` are spent."""
    path = "/api/v1/certificates/xos"
    answers: list[dict[str, Any]] = []
    warm = HttpClient(port, key)
    try:
        for pem in csrs[:WARMUP]:
            status, body = warm.call("POST", path, {"csr": pem.decode()})
            if status != 201:
                raise RuntimeError(f"POST {path}: {status} {body[:300]!r}")
            answers.append(json.loads(body))
    finally:
        warm.close()
    lock, stop = threading.Lock(), threading.Event()
    numbers = iter(range(WARMUP, WARMUP + count))
    with measuring(quiet_wait) as run:
        deadline = time.perf_counter() + seconds

        def worker() -> None:
            client = HttpClient(port, key)
            try:
                while not stop.is_set() and time.perf_counter() < deadline:
                    with lock:
                        n = next(numbers, None)
                    if n is None:
                        return
                    begun = time.perf_counter()
                    status, _ = client.call("POST", path, {"csr": csrs[n].decode()})
                    elapsed = time.perf_counter() - begun
                    with lock:
                        if status == 201:
                            run.latency.add(elapsed)
                            run.n += 1
                        else:
                            run.errors += 1
            finally:
                client.close()

        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(worker) for _ in range(clients)]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                stop.set()
                raise
    return run, answers


def fetch_timed(port: int, path: str) -> tuple[float, bytes]:
    client = HttpClient(port, "none")
    try:
        started = time.perf_counter()
        body = client.get(path)
        return time.perf_counter() - started, body
    finally:
        client.close()


def insert_revoked(url: str, revoked: list[ca.Revoked]) -> float:
    """Bulk-insert revoked x509-user rows of issuing CA generation 1 (SQLAlchemy Core)."""
    table = IssuedCertificate.__table__
    now = dt.datetime.now(dt.UTC)
    rows = [{"kind": "x509-user", "issuer": 1, "serial": format(r.serial, "x"),
             "user_id": None, "node_id": None, "subject": "CN=x", "vos": "", "fqans": "",
             "fingerprint": "0" * 64, "public_key": None,
             "not_before": now - dt.timedelta(days=2), "not_after": now + dt.timedelta(days=1),
             "issued_at": now - dt.timedelta(days=2), "revoked_at": r.revoked_at,
             "revocation_reason": r.reason.value if r.reason else None} for r in revoked]
    engine = sa.create_engine(url)
    started = time.perf_counter()
    try:
        with engine.begin() as conn:
            for i in range(0, len(rows), 10_000):
                conn.execute(table.insert(), rows[i:i + 10_000])
    finally:
        engine.dispose()
    return time.perf_counter() - started


def bump_revocations(url: str) -> None:
    """Tell CRLPublisher its stored CRL is stale, as a revocation would."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE counters SET value = value + 1 "
                                 "WHERE name = 'revocations'"))
    finally:
        engine.dispose()


def service_crl(args: argparse.Namespace, port: int, url: str,
                revoked: list[ca.Revoked]) -> tuple[list[dict[str, Any]], float]:
    inserted = insert_revoked(url, revoked)
    print(f"  {len(revoked):,} revoked rows inserted in {inserted:.1f} s", flush=True)
    sizes: list[int] = []

    def cold() -> None:
        sizes.append(len(fetch_timed(port, "/ca/crl.der")[1]))

    # Each cold run follows a bump of the revocations counter (not timed), as after a
    # revocation: CRLPublisher then reads every revoked row and signs a new CRL.
    run = repeat(cold, args.crl_runs, args.seconds, args.quiet_wait,
                 before=lambda: bump_revocations(url))
    crl = x509.load_der_x509_crl(fetch_timed(port, "/ca/crl.der")[1])
    if len(crl) != len(revoked):
        raise RuntimeError(f"the service's CRL lists {len(crl)} serials, not {len(revoked)}")
    results = [crl_runs("ours: service GET /ca/crl.der, cold (CRLPublisher rebuilds)", run,
                        sizes[-1])]
    warm = loop(lambda i: fetch_timed(port, "/ca/crl.der"), args.crl_warm, args.seconds,
                args.quiet_wait)
    results.append(described("ours: service GET /ca/crl.der, warm (stored CRL)", warm,
                             crl_bytes=sizes[-1]))
    return results, inserted


# -- 4. OCSP ---------------------------------------------------------------------------
def ocsp_requests(cert: x509.Certificate, issuer: x509.Certificate) -> list[bytes]:
    return [ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
            .add_extension(x509.OCSPNonce(secrets.token_bytes(16)), critical=False)
            .build().public_bytes(serialization.Encoding.DER) for _ in range(NONCES)]


def post_ocsp(port: int, path: str, der: bytes) -> bytes:
    """One OCSP request on a new connection (gunicorn's sync worker closes each one)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=der,
                           headers={"Content-Type": "application/ocsp-request"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path} on port {port}: {response.status} {body[:200]!r}")
        return body
    finally:
        connection.close()


def check_ocsp(answer: bytes, request: bytes) -> dict[str, Any]:
    response = ocsp.load_der_ocsp_response(answer)
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise RuntimeError(f"OCSP answer: {response.response_status}")
    nonce = ocsp.load_der_ocsp_request(request).extensions.get_extension_for_class(
        x509.OCSPNonce).value.nonce
    echoed = [e.value.nonce for e in response.extensions if isinstance(e.value, x509.OCSPNonce)]
    return {"status": response.certificate_status.name, "bytes": len(answer),
            "certificates_included": len(response.certificates),
            "next_update": response.next_update_utc is not None, "nonce_echoed": echoed == [nonce]}


def listening(port: int) -> bool:
    """Whether a socket listens on ``port`` (read from /proc, without connecting)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(p[1].endswith(wanted) and p[3] == "0A" for p in (x.split() for x in lines)):
            return True
    return False


@contextmanager
def openssl_responder(folder: Path, index: Path, issuing: ca.IssuingCA, requests: int
                      ) -> Iterator[int]:
    """``openssl ocsp`` as a responder; it exits after ``requests`` requests and is
    stopped however the block ends. openssl 3.0 binds the wildcard address (it has no
    bind address option); only 127.0.0.1 is sent to."""
    cert_pem, key_pem, chain_pem = write_key_and_chain(folder, issuing)
    port = free_port()
    with open(folder / "responder.log", "wb") as log:
        process = subprocess.Popen(
            [OPENSSL, "ocsp", "-index", str(index), "-port", str(port), "-rsigner",
             str(cert_pem), "-rkey", str(key_pem), "-CA", str(chain_pem), "-nmin", "60",
             "-resp_key_id", "-resp_no_certs", "-nrequest", str(requests)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not listening(port):
            if process.poll() is not None:
                raise RuntimeError(f"openssl ocsp exited with {process.returncode}: "
                                   f"{(folder / 'responder.log').read_text()[-500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("openssl ocsp did not listen within 60 s")
            time.sleep(0.05)
        yield port
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def ocsp_latency(args: argparse.Namespace, work: Path, port: int, loaded_issuing: ca.IssuingCA,
                 cert: x509.Certificate, revoked: list[ca.Revoked]) -> dict[str, Any]:
    print("4. OCSP (a new connection per request):", flush=True)
    requests = ocsp_requests(cert, loaded_issuing.certificate)
    folder = work / "ocsp"
    folder.mkdir()
    index = folder / "index.txt"
    expiry = cert.not_valid_after_utc
    serial = format(cert.serial_number, "X")
    serial = "0" * (len(serial) % 2) + serial
    subject = "/" + "/".join(a.rfc4514_string() for a in cert.subject)
    index.write_text(index_lines(revoked, expiry)
                     + f"V\t{utc_time(expiry)}\t\t{serial}\tunknown\t{subject}\n")
    results = []
    ours_check = check_ocsp(post_ocsp(port, "/ocsp", requests[0]), requests[0])
    ours = loop(lambda i: post_ocsp(port, "/ocsp", requests[i % NONCES]), args.ocsp,
                args.seconds, args.quiet_wait)
    results.append(described("ours: service POST /ocsp", ours, answer=ours_check))
    with openssl_responder(folder, index, loaded_issuing, 1 + WARMUP + args.ocsp) as peer_port:
        peer_check = check_ocsp(post_ocsp(peer_port, "/", requests[0]), requests[0])
        peer = loop(lambda i: post_ocsp(peer_port, "/", requests[i % NONCES]), args.ocsp,
                    args.seconds, args.quiet_wait)
    results.append(described("peer: openssl ocsp responder", peer, answer=peer_check))
    good = ca.CertStatus()
    in_process = loop(lambda i: ca.answer_ocsp(requests[i % NONCES], [loaded_issuing],
                                               lambda issuer, s: good),
                      args.ocsp_in_process, args.seconds, args.quiet_wait)
    results.append(described("ours: ca.answer_ocsp in-process (lookup answers GOOD at once)",
                             in_process))
    return {"runs": results}


def service(args: argparse.Namespace, work: Path, code: str, log: str,
            revoked: list[ca.Revoked]) -> dict[str, Any]:
    instance = work / "instance"
    instance.mkdir(mode=0o700)
    url = f"sqlite:///{instance}/xos.sqlite3"
    passphrase = "bench-" + secrets.token_urlsafe(24)
    os.environ["XOS_INSTANCE_PATH"] = str(instance)
    os.environ["XOS_CA_PASSPHRASE"] = passphrase
    CADirectory.init(instance / "ca", "Bench", passphrase.encode())
    loaded = CADirectory(instance / "ca").load(
        passphrase.encode(), lambda g: (f"{PUBLIC_URL}/ca/crl/{g}.der", OCSP_URL))
    started = time.perf_counter()
    migrate(url)
    migrate_seconds = time.perf_counter() - started
    key = make_member(url)
    csrs = make_csrs(2 * (WARMUP + args.http), "member")
    print("2. issuing over HTTP (gunicorn, 1 sync worker):", flush=True)
    http_runs: list[dict[str, Any]] = []
    first: dict[str, Any] | None = None
    with gunicorn(url, str(instance), 1, log, code) as port:
        for clients in (1, 2):
            part = csrs[(clients - 1) * (WARMUP + args.http):clients * (WARMUP + args.http)]
            run, answers = post_certificates(port, key, part, args.http, args.seconds,
                                             clients, args.quiet_wait)
            first = first or answers[0]
            http_runs.append(described(
                f"ours: POST /api/v1/certificates/xos, {clients} client(s)", run,
                clients=clients))
        assert first is not None
        issued = x509.load_pem_x509_certificate(first["certificate"].encode())
        print("3. (service) CRL from the database:", flush=True)
        crl_results, inserted = service_crl(args, port, url, revoked)
        ocsp_results = ocsp_latency(args, work, port, loaded.issuing, issued, revoked)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            certificates = conn.execute(sa.text("SELECT count(*) FROM certificates "
                                                "WHERE revoked_at IS NULL")).scalar()
    finally:
        engine.dispose()
    return {"http": http_runs, "crl": crl_results, "ocsp": ocsp_results,
            "migrate_seconds": migrate_seconds, "insert_seconds": inserted,
            "issued_over_http": certificates,
            "http_extensions": extension_oids(issued)}


# -- the report --------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    return {**machine_basics(), "cryptography": cryptography.__version__,
            "cryptography_openssl": openssl_backend.openssl_version_text(),
            "openssl_cli": openssl("version").stdout.decode().strip(),
            "sqlite": sqlite3.sqlite_version}


def by_name(runs: list[dict[str, Any]], start: str) -> dict[str, Any]:
    return next(r for r in runs if r["name"].startswith(start))


def markdown(result: dict[str, Any]) -> str:
    m, issue, svc = result["machine"], result["issuance"], result["service"]
    crl = result["crl"] + svc["crl"]
    ocsp_runs = svc["ocsp"]["runs"]
    ours_issue = by_name(issue["runs"], "ours")
    x509_peer = by_name(issue["runs"], "peer: openssl x509")
    batch = by_name(issue["runs"], "peer: openssl ca")
    start_up = by_name(issue["runs"], "peer: openssl version")
    http1, http2 = svc["http"]
    crl_ours, crl_peer = by_name(crl, "ours: ca.build_crl"), by_name(crl, "peer")
    cold = by_name(crl, "ours: service GET /ca/crl.der, cold")
    warm = by_name(crl, "ours: service GET /ca/crl.der, warm")
    ocsp_ours, ocsp_peer = by_name(ocsp_runs, "ours: service"), by_name(ocsp_runs, "peer")
    ocsp_lib = by_name(ocsp_runs, "ours: ca.answer_ocsp")

    def busy(*runs: dict[str, Any]) -> str:
        return " / ".join(f"{r['latency_ms']['busy_pct']:.0f}" for r in runs)

    def rate_row(what: str, ours: dict[str, Any], peer: dict[str, Any] | None,
                 peer_label: str = "") -> str:
        if peer is None:
            return f"| {what} | {ours['per_second']:,.0f} | — | — | — | {busy(ours)} |"
        ratio = ours["per_second"] / peer["per_second"]
        faster = f"ours {ratio:.1f}×" if ratio >= 1 else f"peer {1 / ratio:.1f}×"
        return (f"| {what} | {ours['per_second']:,.0f} | {peer['per_second']:,.0f}"
                f"{peer_label} | {ratio:.2f} | {faster} | {busy(ours, peer)} |")

    def time_row(what: str, ours: float, peer: float | None, unit: str,
                 runs: tuple[dict[str, Any], ...], peer_label: str = "") -> str:
        scale = 1000 if unit == "ms" else 1
        if peer is None:
            return f"| {what} | {ours * scale:,.2f} {unit} | — | — | — | {busy(*runs)} |"
        ratio = ours / peer
        faster = f"ours {1 / ratio:.1f}×" if ratio <= 1 else f"peer {ratio:.1f}×"
        return (f"| {what} | {ours * scale:,.2f} {unit} | {peer * scale:,.2f} {unit}"
                f"{peer_label} | {ratio:.2f} | {faster} | {busy(*runs)} |")

    def ms(run: dict[str, Any], p: str) -> float:
        return float(run["latency_ms"][p]) / 1000

    n_rev = result["sizes"]["revoked"]
    lines = [
        f"### Certificate authority: ours vs openssl ({n_rev:,} revoked serials)", "",
        f"Run {result['started']} ({result['run_seconds'] / 60:.1f} min) on ca + vo_service "
        f"{result['code']['commit'][:7]} ({result['code']['source']}), `{result['command']}`; "
        f"{m['cpu']}, {m['nproc']} cores, {m['memory_gib']} GiB; Python {m['python']}, "
        f"cryptography {m['cryptography']} ({m['cryptography_openssl']}), "
        f"{m['openssl_cli']} (CLI), SQLite {m['sqlite']}.", "",
        "| measure | ours | peer | ours ÷ peer | faster | machine busy % (ours / peer) |",
        "|---|---:|---:|---:|---|---:|",
        "| **1. issue a user certificate, one thread (certs/s)** | | | | | |",
        rate_row("`ca.issue_user_certificate` in-process vs `openssl ca -batch` "
                 f"({batch['n']:,} certs in one process)", ours_issue, batch),
        rate_row("`ca.issue_user_certificate` in-process vs `openssl x509 -req`, a process "
                 "per certificate", ours_issue, x509_peer),
        "| **2. issue over HTTP, gunicorn 1 sync worker (certs/s)** | | | | | |",
        rate_row("POST /api/v1/certificates/xos, 1 client vs `openssl ca -batch`", http1, batch),
        rate_row("POST /api/v1/certificates/xos, 2 clients vs `openssl ca -batch`", http2,
                 batch),
        rate_row("POST /api/v1/certificates/xos, 1 client vs `openssl x509 -req` per process",
                 http1, x509_peer),
        f"| **3. CRL of {n_rev:,} revoked serials (median of runs)** | | | | | |",
        time_row("`ca.build_crl` + DER in-process vs `openssl ca -gencrl`",
                 crl_ours["median_s"], crl_peer["median_s"], "s", (crl_ours, crl_peer)),
        time_row("service GET /ca/crl.der cold (DB read + rebuild + store) vs "
                 "`openssl ca -gencrl`", cold["median_s"], crl_peer["median_s"], "s",
                 (cold, crl_peer)),
        time_row("service GET /ca/crl.der warm (stored CRL), p50", ms(warm, "p50"), None, "ms",
                 (warm,)),
        "| Vault PKI, reported (not measured here): 2–3 s per revocation at ~17,000 revoked"
        " | | | | | |",
        "| **4. OCSP answer latency** | | | | | |",
        time_row("service POST /ocsp vs `openssl ocsp` responder, p50", ms(ocsp_ours, "p50"),
                 ms(ocsp_peer, "p50"), "ms", (ocsp_ours, ocsp_peer)),
        time_row("service POST /ocsp vs `openssl ocsp` responder, p99", ms(ocsp_ours, "p99"),
                 ms(ocsp_peer, "p99"), "ms", (ocsp_ours, ocsp_peer)),
        time_row("`ca.answer_ocsp` in-process, p50", ms(ocsp_lib, "p50"), None, "ms",
                 (ocsp_lib,)),
        time_row("`ca.answer_ocsp` in-process, p99", ms(ocsp_lib, "p99"), None, "ms",
                 (ocsp_lib,)),
        "",
        "| latency detail | n | p50 ms | p99 ms | mean ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [ours_issue, x509_peer, start_up, http1, http2, warm, ocsp_ours, ocsp_peer,
              ocsp_lib]:
        lat = r["latency_ms"]
        lines.append(f"| {r['name']} | {r['n']:,} | {lat['p50']:.2f} | {lat['p99']:.2f} "
                     f"| {lat['mean']:.2f} | {lat['max']:.2f} | {r['errors']} |")
    every = [*issue["runs"], *crl, *svc["http"], *ocsp_runs]
    waited = sum(r["latency_ms"]["waited_s"] for r in every)
    highest = max(r["latency_ms"]["busy_pct"] for r in every)
    oc, pc = ocsp_ours["answer"], ocsp_peer["answer"]
    lines += [
        "",
        "Notes:",
        "",
        f"- ours ÷ peer: for certs/s above 1 means ours is faster; for times below 1. Per "
        f"CPU-second (JSON `per_cpu_second`): ours in-process "
        f"{ours_issue['per_cpu_second']:,.0f}, `openssl ca -batch` "
        f"{batch['per_cpu_second']:,.0f}, `openssl x509` per process "
        f"{x509_peer['per_cpu_second']:,.0f} certs.",
        f"- Process start-up is part of the per-process peer: `openssl x509 -req` takes "
        f"{x509_peer['latency_ms']['p50']:.2f} ms (p50, spawned from Python) where "
        f"`openssl ca -batch` spends {1000 / batch['per_second']:.2f} ms per certificate; "
        f"`openssl version` alone (exec, no configuration, provider or key loading) takes "
        f"{start_up['latency_ms']['p50']:.2f} ms. `openssl ca -batch` also writes its "
        f"index.txt and one file per certificate; ours returns a certificate object.",
        f"- Two OpenSSL builds: `cryptography` (ours) signs with its bundled "
        f"{m['cryptography_openssl']}, the peer is the system CLI, {m['openssl_cli']}.",
        f"- Same extensions in ours and both peers' certificates: "
        f"{'yes' if issue['same_extensions'] else 'NO'} "
        f"({len(issue['extensions']['ours'])} extensions; DER {issue['certificate_bytes']['ours']}"
        f" B ours, {issue['certificate_bytes']['openssl']} B openssl); over HTTP "
        f"{len(svc['http_extensions'])} extensions. Ours, the service and the peers sign with "
        f"P-256 ECDSA-SHA256.",
        f"- CRL: {n_rev:,} entries, a third with reason superseded, the same serials in every "
        f"path; {crl_ours['n']} / {crl_peer['n']} / {cold['n']} runs (ours / openssl / service "
        f"cold), best {crl_ours['best_s']:.2f} / {crl_peer['best_s']:.2f} / "
        f"{cold['best_s']:.2f} s. Sizes (DER): ours {crl_ours['crl_bytes'] / 1e6:.1f} MB, "
        f"openssl {crl_peer['crl_bytes'] / 1e6:.1f} MB, service {cold['crl_bytes'] / 1e6:.1f} "
        f"MB. openssl's time includes parsing its index.txt and writing PEM (`openssl ca` has "
        f"no DER output); ours starts from `Revoked` objects in memory. The service rows were "
        f"bulk-inserted in {svc['insert_seconds']:.1f} s (not timed above).",
        "- Vault: hashicorp/vault#9176 (2020, Vault 1.1.2 and 1.4.2) reports 2–3 s and >70 % "
        "CPU per revocation with a CRL of 16.9k entries, because Vault rebuilt the CRL on "
        "each revocation; that is a reported figure on other hardware, not measured here. "
        "CRLPublisher rebuilds on the next fetch after any number of revocations.",
        f"- OCSP: the same {NONCES} requests (SHA-1 CertID, 16-byte nonce) for a certificate "
        f"the service issued, sent to both on a new connection each; both answer "
        f"{oc['status']} / {pc['status']}, nonce echoed {oc['nonce_echoed']} / "
        f"{pc['nonce_echoed']}, {oc['bytes']} / {pc['bytes']} B, certificates included "
        f"{oc['certificates_included']} / {pc['certificates_included']}. The openssl "
        f"responder's index holds the same {n_rev:,} revoked rows plus that certificate; it "
        "answers one request at a time, as gunicorn's one sync worker does. openssl 3.0's "
        "responder cannot bind to 127.0.0.1 only (it listens on the wildcard address, on a "
        "free port, for its run only); all requests went to 127.0.0.1.",
        "- `ca.answer_ocsp` in-process uses a lookup that answers GOOD without a database.",
        f"- Machine busy %: the whole machine's CPU use while each figure was measured (2 "
        f"cores: one busy core is 50 %; more means other work ran too). Highest "
        f"{highest:.0f} %; waited for a quiet machine {waited:.0f} s in all (at most "
        f"{result['quiet_wait']:.0f} s per measurement).",
        "",
    ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issue", type=int, default=2000,
                        help="certificates issued in-process and by openssl ca -batch")
    parser.add_argument("--issue-processes", type=int, default=300,
                        help="certificates issued by openssl x509, a process each")
    parser.add_argument("--http", type=int, default=1000,
                        help="POST /certificates/xos requests per client count")
    parser.add_argument("--revoked", type=int, default=100_000, help="revoked serials in CRLs")
    parser.add_argument("--crl-runs", type=int, default=3, help="timed runs per CRL path")
    parser.add_argument("--crl-warm", type=int, default=20, help="warm GET /ca/crl.der")
    parser.add_argument("--ocsp", type=int, default=1000, help="OCSP requests over HTTP, each")
    parser.add_argument("--ocsp-in-process", type=int, default=2000,
                        help="in-process ca.answer_ocsp calls")
    parser.add_argument("--seconds", type=float, default=60, help="time budget per loop")
    parser.add_argument("--quiet-wait", type=float, default=QUIET_WAIT,
                        help="most seconds to wait for a quiet machine before each measurement")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="small counts, 20,000 revoked serials, short waits")
    parser.add_argument("--rev", default="HEAD",
                        help="commit whose ca and vo_service to measure, or 'worktree' for "
                             "the files as they are (default: HEAD)")
    args = parser.parse_args()
    if args.quick:
        args.issue, args.issue_processes, args.http, args.revoked = 300, 50, 150, 20_000
        args.crl_runs, args.crl_warm, args.ocsp, args.ocsp_in_process = 1, 5, 200, 300
        args.seconds, args.quiet_wait = 15, min(args.quiet_wait, 10)
    return args


def benchmark(args: argparse.Namespace, code: str, log: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="xos-bench-ca-"))
    saved = {k: os.environ.get(k) for k in ("XOS_INSTANCE_PATH", "XOS_CA_PASSPHRASE")}
    try:
        revoked = revoked_entries(args.revoked, random.Random(args.seed))
        issue = issuance(args, work)
        issuing = issue.pop("issuing")
        crl = crls(args, work, issuing, revoked)
        svc = service(args, work, code, log, revoked)
        return {"machine": machine(), "issuance": issue, "crl": crl, "service": svc,
                "quiet_wait": args.quiet_wait,
                "sizes": {k: getattr(args, k) for k in (
                    "issue", "issue_processes", "http", "revoked", "crl_runs", "crl_warm",
                    "ocsp", "ocsp_in_process", "seconds")}}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so gunicorn, openssl and the temp folders go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.rev != "worktree" and not is_frozen_run():
        sys.exit(run_frozen(args.rev, __file__))
    code, code_info = code_under_test(ca, vo_service)
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"ca-{started.strftime('%Y%m%dT%H%M%SZ')}"
    log = RESULTS / f"{name}-gunicorn.log"
    try:
        result = {"started": started.isoformat(timespec="seconds"), "code": code_info,
                  "command": " ".join([".venv/bin/python", "bench/bench_ca.py",
                                       *sys.argv[1:]]),
                  **benchmark(args, code, str(log))}
    finally:
        if log.exists() and not log.stat().st_size:
            log.unlink()  # gunicorn had nothing to say
    result["run_seconds"] = time.monotonic() - clock
    save_results(name, result, markdown(result))


if __name__ == "__main__":
    main()
