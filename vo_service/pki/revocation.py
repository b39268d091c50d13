"""Revoking certificates when the access they carried is withdrawn, and publishing it:
CRLs per issuing CA generation, OCSP statuses and the SSH key revocation list.

A revocation is final (reinstating a member does not revive their old certificates;
they fetch new ones). Every revocation advances the ``revocations`` counter, which tells
the CRL and KRL builders that their last answer is stale. CRLs are rebuilt on the next
fetch after a change, not at the revocation itself, so that revoking the certificates
of a whole VO costs one rebuild, not one per certificate.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Select, exists, select

import ca
from ca.directory import LoadedCA

from ..authz import Actor
from ..context import ServiceContext
from ..errors import NotFound
from ..memberships.models import Membership
from ..numbering import advance_counter
from ..sync.models import Counter
from ..timeutil import aware, iso, utcnow
from .models import CertificateVO, IssuedCertificate, PublishedCRL

X509_KINDS = ("x509-user", "x509-node")
REASONS = {r.value: r for r in x509.ReasonFlags}



def certificate_record(cert: IssuedCertificate) -> dict[str, object]:
    return {"serial": cert.serial, "kind": cert.kind, "issuer": cert.issuer,
            "subject": cert.subject, "vos": [v for v in cert.vos.split("\n") if v],
            "fqans": [f for f in cert.fqans.split("\n") if f],
            "fingerprint_sha256": cert.fingerprint,
            "not_before": iso(cert.not_before), "not_after": iso(cert.not_after),
            "issued_at": iso(cert.issued_at), "revoked_at": iso(cert.revoked_at),
            "revocation_reason": cert.revocation_reason}


class Revoker:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    def _live(self) -> Select[Any]:
        return select(IssuedCertificate).where(IssuedCertificate.revoked_at.is_(None),
                                               IssuedCertificate.not_after > utcnow())

    def revoke(self, actor: Actor, certs: Iterable[IssuedCertificate],
               reason: x509.ReasonFlags, why: str) -> int:
        """Revoke each certificate not revoked yet; audit each; return how many."""
        now, count = utcnow(), 0
        for cert in certs:
            if cert.revoked_at is not None:
                continue
            cert.revoked_at, cert.revocation_reason = now, reason.value
            self.ctx.audit.append(actor.label, "certificate.revoke", "certificate",
                                  f"{cert.kind}:{cert.issuer}:{cert.serial}",
                                  after={"reason": reason.value, "why": why})
            count += 1
        if count:
            self.session.flush()
            advance_counter(self.session, "revocations", 1)
        return count

    def for_user(self, actor: Actor, user_id: uuid.UUID, reason: x509.ReasonFlags,
                 why: str) -> int:
        """Every live certificate of a user (suspended, deleted, or left every VO)."""
        return self.revoke(actor, self.session.scalars(
            self._live().where(IssuedCertificate.user_id == user_id)), reason, why)

    def for_membership(self, actor: Actor, user_id: uuid.UUID, vo_id: int,
                       reason: x509.ReasonFlags, why: str) -> int:
        """Certificates that carried a VO the user no longer holds actively. With no
        active membership left, the user's SSH certificates go too."""
        count = self.revoke(actor, self.session.scalars(self._live().where(
            IssuedCertificate.user_id == user_id,
            exists().where(CertificateVO.certificate_id == IssuedCertificate.id,
                           CertificateVO.vo_id == vo_id))), reason, why)
        still_member = self.session.scalar(select(exists().where(
            Membership.user_id == user_id, Membership.status == "active")))
        if not still_member:
            count += self.revoke(actor, self.session.scalars(self._live().where(
                IssuedCertificate.user_id == user_id,
                IssuedCertificate.kind == "ssh-user")), reason, why)
        return count

    def for_fqans(self, actor: Actor, vo_id: int, lost: set[str], why: str,
                  user_id: uuid.UUID | None = None) -> int:
        """Certificates that carried a group or role just lost: by one user, or by
        everyone (a deleted group)."""
        stmt = self._live().where(exists().where(
            CertificateVO.certificate_id == IssuedCertificate.id, CertificateVO.vo_id == vo_id))
        if user_id is not None:
            stmt = stmt.where(IssuedCertificate.user_id == user_id)
        carrying = [c for c in self.session.scalars(stmt) if lost & set(c.fqans.split("\n"))]
        return self.revoke(actor, carrying, x509.ReasonFlags.privilege_withdrawn, why)

    def status(self, generation: int, serial: int) -> ca.CertStatus | None:
        """What OCSP says of an X.509 serial of an issuing CA generation."""
        cert = self.session.scalar(select(IssuedCertificate).where(
            IssuedCertificate.kind.in_(X509_KINDS), IssuedCertificate.issuer == generation,
            IssuedCertificate.serial == format(serial, "x")))
        if cert is None:
            return None
        if cert.revoked_at is None:
            return ca.CertStatus()
        return ca.CertStatus(revoked_at=aware(cert.revoked_at),
                             reason=REASONS.get(cert.revocation_reason or "unspecified"))


def _revocations(ctx: ServiceContext) -> int:
    return int(ctx.session.get(Counter, "revocations").value or 0)  # type: ignore[union-attr]


class CRLPublisher:
    """The CRL of an issuing CA generation, rebuilt when stale and shared by replicas."""

    def __init__(self, ctx: ServiceContext, loaded: LoadedCA, validity: dt.timedelta) -> None:
        self.ctx = ctx
        self.session = ctx.session
        self.loaded = loaded
        self.validity = validity

    def der(self, generation: int) -> bytes:
        issuing = self.loaded.issuers.get(generation)
        if issuing is None:
            raise NotFound(f"no issuing CA generation {generation}")
        seen = _revocations(self.ctx)
        row = self.session.get(PublishedCRL, generation, with_for_update=True)
        now = utcnow()
        if row is not None and row.revocations_seen == seen and \
                now < aware(row.this_update) + (self.validity / 2):
            return row.der
        revoked = [ca.Revoked(serial=int(serial, 16), revoked_at=aware(at),
                              reason=REASONS.get(reason or "unspecified"))
                   for serial, at, reason in self.session.execute(
                       select(IssuedCertificate.serial, IssuedCertificate.revoked_at,
                              IssuedCertificate.revocation_reason)
                       .where(IssuedCertificate.kind.in_(X509_KINDS),
                              IssuedCertificate.issuer == generation,
                              IssuedCertificate.revoked_at.is_not(None)))]
        number = row.number + 1 if row is not None else 1
        der = ca.build_crl(issuing, revoked, number=number, this_update=now,
                           next_update=now + self.validity).public_bytes(Encoding.DER)
        if row is None:
            row = PublishedCRL(issuer=generation)
            self.session.add(row)
        row.number, row.revocations_seen, row.der = number, seen, der
        row.this_update, row.next_update = now, now + self.validity
        self.session.flush()
        return der


def ssh_krl(ctx: ServiceContext, loaded: LoadedCA) -> bytes:
    """An OpenSSH key revocation list (``RevokedKeys`` in sshd_config) naming the serials
    of every revoked, unexpired SSH certificate, per SSH CA, built by ``ssh-keygen -k``
    (OpenSSH's own KRL writer)."""
    rows = ctx.session.execute(select(IssuedCertificate.issuer, IssuedCertificate.serial)
                               .where(IssuedCertificate.kind.in_(("ssh-user", "ssh-host")),
                                      IssuedCertificate.revoked_at.is_not(None),
                                      IssuedCertificate.not_after > utcnow())).all()
    with tempfile.TemporaryDirectory(prefix="xos-krl-") as tmp:
        out = os.path.join(tmp, "krl")
        # ssh-keygen takes one CA (-s) per run: the first run creates, later ones update.
        command = ["ssh-keygen", "-q", "-k", "-f", out]
        for generation, ssh_ca in sorted(loaded.ssh.items()):
            serials = [int(s, 16) for g, s in rows if g == generation]
            if not serials:
                continue
            ca_pub, spec = os.path.join(tmp, f"ca{generation}.pub"), os.path.join(tmp, "spec")
            with open(ca_pub, "w") as handle:
                handle.write(ssh_ca.public_line() + "\n")
            with open(spec, "w") as handle:
                handle.write("".join(f"serial: {serial}\n" for serial in serials))
            subprocess.run([*command, "-s", ca_pub, spec],  # noqa: S603 (our own files)
                           check=True, capture_output=True, timeout=30)
            command = ["ssh-keygen", "-q", "-k", "-u", "-f", out]
        if not os.path.exists(out):  # nothing revoked: an empty KRL
            subprocess.run(command, check=True, capture_output=True, timeout=30)  # noqa: S603
        with open(out, "rb") as handle:
            return handle.read()
