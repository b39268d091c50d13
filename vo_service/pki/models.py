from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from ..timeutil import utcnow

#: kinds of certificate; ``x509-*`` ones are answered for by OCSP and listed in CRLs
CERTIFICATE_KINDS = ("x509-user", "x509-node", "ssh-user", "ssh-host")


class IssuedCertificate(db.Model):  # type: ignore[name-defined,misc]
    """Every certificate the service signed. Rows are never deleted: OCSP answers for
    each serial the CA ever issued, and the audit log points at them."""

    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # X.509: the issuing CA generation; SSH: the SSH CA generation.
    issuer: Mapped[int] = mapped_column(Integer)
    # Lower-case hex, no leading zeros: X.509 serials reach 159 bits.
    serial: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id"), index=True)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"), index=True)
    subject: Mapped[str] = mapped_column(String(512))  # DN, or SSH principals joined by ','
    # What the certificate carries: VO names, group paths and role FQANs, one per line.
    vos: Mapped[str] = mapped_column(Text, default="")
    fqans: Mapped[str] = mapped_column(Text, default="")
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the certificate
    public_key: Mapped[str | None] = mapped_column(Text)  # SSH: the certified key line
    not_before: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revocation_reason: Mapped[str | None] = mapped_column(String(32))


class CertificateVO(db.Model):  # type: ignore[name-defined,misc]
    """Which VOs a certificate carries, so that leaving a VO finds its certificates."""

    __tablename__ = "certificate_vos"

    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"),
                                                primary_key=True)
    vo_id: Mapped[int] = mapped_column(ForeignKey("vos.id"), primary_key=True, index=True)


class PublishedCRL(db.Model):  # type: ignore[name-defined,misc]
    """The latest CRL of each issuing CA generation, shared by every service replica.

    Rebuilt when the ``revocations`` counter moved past ``revocations_seen`` or half its
    validity has passed; the number only grows."""

    __tablename__ = "crls"

    issuer: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer)
    revocations_seen: Mapped[int] = mapped_column(Integer)
    this_update: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    next_update: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    der: Mapped[bytes] = mapped_column(LargeBinary)


Index("ux_certificates_issuer_serial", IssuedCertificate.kind, IssuedCertificate.issuer,
      IssuedCertificate.serial, unique=True)
Index("ix_certificates_revoked", IssuedCertificate.issuer, IssuedCertificate.revoked_at)
