"""Issuing certificates: XOS user certificates, SSH user certificates, node certificates
and SSH host certificates, each recorded and audited.

The service decides what a certificate says; a request can only narrow it. A user gets
a certificate only while active with at least one active membership, only with VOs,
groups and roles held now, and for at most the shortest lifetime the chosen VOs allow
(``VO.cert_hours``). Groups default to every group held in the chosen VOs; roles are
carried only when asked for, as VOMS does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import select

import ca
from ca.directory import LoadedCA

from ..authz import Actor
from ..context import ServiceContext
from ..errors import CAUnavailable, InvalidInput, InvalidTransition, NotFound, PermissionDenied
from ..memberships.services import Holdings, MembershipService
from ..nodes.models import Node
from ..nodes.services import NodeService
from ..timeutil import utcnow
from ..users.models import User
from ..vos.models import VO
from .models import CertificateVO, IssuedCertificate
from .revocation import REASONS, Revoker

MAX_REQUESTED = 200  # VOs, groups or roles named in one request


@contextmanager
def ca_errors() -> Iterator[None]:
    """The CA library's refusals become the service's errors, in one place."""
    try:
        yield
    except (ca.InvalidRequest, ca.PolicyError) as error:
        raise InvalidInput(str(error)) from None
    except ca.KeyStoreError as error:
        raise CAUnavailable(str(error)) from None


def _fingerprint(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()


def _chosen(requested: Sequence[str] | None, held: list[str], what: str) -> list[str]:
    if requested is None:
        return held
    if len(requested) > MAX_REQUESTED:
        raise InvalidInput(f"at most {MAX_REQUESTED} {what}s may be requested")
    if len(set(requested)) != len(requested):
        raise InvalidInput(f"a {what} is named twice")
    missing = [r for r in requested if r not in held]
    if missing:
        raise PermissionDenied(f"you do not hold {what} {missing[0][:80]!r}")
    return list(requested)


class CertificateService:
    def __init__(self, ctx: ServiceContext, loaded: LoadedCA, config: Any) -> None:
        self.ctx = ctx
        self.session = ctx.session
        self.loaded = loaded
        self.config = config

    def _entitled(self, actor: Actor, user: User) -> Holdings:
        if actor.user_id != user.id and not actor.is_system:
            raise PermissionDenied("users request certificates for themselves only")
        if user.status != "active":
            raise InvalidTransition(f"user {user.username!r} is {user.status}")
        held = MembershipService(self.ctx).holdings(user)
        if not held.vos:
            raise InvalidTransition(f"{user.username!r} has no active VO membership")
        return held

    def _lifetime(self, vos: list[VO], hours: int | None) -> dt.timedelta:
        policy = min(vo.cert_hours for vo in vos)
        if hours is None:
            return dt.timedelta(hours=policy)
        if not 1 <= hours <= policy:
            raise InvalidInput(f"lifetime must be 1 to {policy} hours (the policy of VO"
                               f" {min(vos, key=lambda v: v.cert_hours).name!r})")
        return dt.timedelta(hours=hours)

    # -- X.509 and SSH for users ----------------------------------------------------------
    def issue_user(self, actor: Actor, user: User, csr: str, *,
                   vos: Sequence[str] | None = None, groups: Sequence[str] | None = None,
                   roles: Sequence[str] | None = None, hours: int | None = None
                   ) -> tuple[IssuedCertificate, x509.Certificate]:
        held = self._entitled(actor, user)
        chosen = _chosen(vos, list(held.vos), "VO")
        if not chosen:
            raise InvalidInput("name at least one VO")
        in_vos = [g for vo in chosen for g in held.groups[vo]]
        chosen_groups = _chosen(groups, in_vos, "group")
        chosen_roles = _chosen(roles, [r for vo in chosen for r in held.roles[vo]], "role") \
            if roles is not None else []
        # The primary group lies in the primary VO: its root group when chosen, else the
        # first chosen group under it, else the root group (membership itself).
        in_primary = [g for g in chosen_groups if g == f"/{chosen[0]}"
                      or g.startswith(f"/{chosen[0]}/")]
        primary_group = f"/{chosen[0]}" if f"/{chosen[0]}" in in_primary or not in_primary \
            else in_primary[0]
        attributes = ca.VOAttributes(
            global_user_id=user.id, primary_vo=chosen[0], other_vos=tuple(chosen[1:]),
            primary_group=primary_group,
            other_groups=tuple(g for g in chosen_groups if g != primary_group),
            roles=tuple(chosen_roles))
        lifetime = self._lifetime([held.vos[v] for v in chosen], hours)
        issuing = self.loaded.issuing
        with ca_errors():
            cert = ca.issue_user_certificate(
                issuing, csr, username=user.username, attributes=attributes,
                lifetime=lifetime, max_lifetime=lifetime,
                organization=self.config["CERT_ORGANIZATION"])
        row = self._record(actor, "x509-user", self.loaded.current, cert.serial_number, cert,
                           user=user, vos=[held.vos[v] for v in chosen],
                           fqans=[*chosen_groups, *chosen_roles],
                           subject=cert.subject.rfc4514_string())
        return row, cert

    def issue_ssh_user(self, actor: Actor, user: User, public_key: str,
                       hours: int | None = None) -> tuple[IssuedCertificate, str]:
        held = self._entitled(actor, user)
        lifetime = self._lifetime(list(held.vos.values()), hours)
        with ca_errors():
            key = ca.load_ssh_public_key(public_key)
            cert = self.loaded.ssh_ca.issue_user(key, principal=user.username,
                                                 key_id=str(user.id), lifetime=lifetime,
                                                 max_lifetime=lifetime)
        line = cert.public_bytes().decode()
        row = self._record(actor, "ssh-user", self.loaded.ssh_current, cert.serial, line.encode(),
                           user=user, vos=[], fqans=[], subject=user.username,
                           not_before=cert.valid_after, not_after=cert.valid_before,
                           public_key=ca.ssh_public_line(key))
        return row, line

    # -- nodes ----------------------------------------------------------------------------
    def _node(self, actor: Actor, node: Node) -> list[VO]:
        if actor.node_id != node.id:
            self.ctx.authz.require_service_admin(actor)
        return NodeService(self.ctx).vos_of(node)

    def _node_lifetime(self, days: int | None) -> dt.timedelta:
        most = self.config["CERT_NODE_DAYS"]
        if days is not None and not 1 <= days <= most:
            raise InvalidInput(f"lifetime must be 1 to {most} days")
        return dt.timedelta(days=days or most)

    def issue_node(self, actor: Actor, node: Node, csr: str, days: int | None = None
                   ) -> tuple[IssuedCertificate, x509.Certificate]:
        vos = self._node(actor, node)
        lifetime = self._node_lifetime(days)
        with ca_errors():
            cert = ca.issue_node_certificate(self.loaded.issuing, csr, hostname=node.name,
                                             vos=[v.name for v in vos], lifetime=lifetime,
                                             max_lifetime=lifetime)
        row = self._record(actor, "x509-node", self.loaded.current, cert.serial_number, cert,
                           node=node, vos=vos, fqans=[], subject=cert.subject.rfc4514_string())
        return row, cert

    def issue_ssh_host(self, actor: Actor, node: Node, public_key: str,
                       days: int | None = None) -> tuple[IssuedCertificate, str]:
        vos = self._node(actor, node)
        lifetime = self._node_lifetime(days)
        with ca_errors():
            key = ca.load_ssh_public_key(public_key)
            cert = self.loaded.ssh_ca.issue_host(key, hostnames=[node.name], key_id=node.name,
                                                 lifetime=lifetime)
        line = cert.public_bytes().decode()
        row = self._record(actor, "ssh-host", self.loaded.ssh_current, cert.serial, line.encode(),
                           node=node, vos=vos, fqans=[], subject=node.name,
                           not_before=cert.valid_after, not_after=cert.valid_before,
                           public_key=ca.ssh_public_line(key))
        return row, line

    # -- records ----------------------------------------------------------------------------
    def _record(self, actor: Actor, kind: str, issuer: int, serial: int,
                cert: x509.Certificate | bytes, *,
                vos: list[VO], fqans: list[str], subject: str, user: User | None = None,
                node: Node | None = None, not_before: int | None = None,
                not_after: int | None = None, public_key: str | None = None
                ) -> IssuedCertificate:
        if isinstance(cert, x509.Certificate):
            data = cert.public_bytes(serialization.Encoding.DER)
            start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        else:
            data = cert
            start = dt.datetime.fromtimestamp(not_before or 0, dt.UTC)
            end = dt.datetime.fromtimestamp(not_after or 0, dt.UTC)
        row = IssuedCertificate(
            kind=kind, issuer=issuer, serial=format(serial, "x"),
            user_id=user.id if user else None, node_id=node.id if node else None,
            subject=subject[:512], vos="\n".join(v.name for v in vos), fqans="\n".join(fqans),
            fingerprint=_fingerprint(data), public_key=public_key, not_before=start,
            not_after=end, issued_at=utcnow())
        self.session.add(row)
        self.session.flush()
        self.session.add_all(CertificateVO(certificate_id=row.id, vo_id=v.id) for v in vos)
        self.session.flush()
        owner = f"user:{user.username}" if user else f"node:{node.name}" if node else "?"
        self.ctx.audit.append(actor.label, "certificate.issue", "certificate",
                              f"{kind}:{issuer}:{row.serial}",
                              after={"for": owner, "subject": row.subject,
                                     "vos": [v.name for v in vos], "fqans": fqans,
                                     "not_after": end.isoformat()})
        return row

    def get(self, serial: str, kind: str | None = None) -> IssuedCertificate:
        text = serial.lower().removeprefix("0x")
        if not text or len(text) > 40 or any(c not in "0123456789abcdef" for c in text):
            raise InvalidInput("a serial is 1 to 40 hexadecimal digits")
        stmt = select(IssuedCertificate).where(IssuedCertificate.serial == text.lstrip("0"))
        if kind:
            stmt = stmt.where(IssuedCertificate.kind == kind)
        rows = list(self.session.scalars(stmt.limit(2)))
        if not rows:
            raise NotFound(f"no certificate with serial {text}")
        return rows[0]

    def read(self, actor: Actor, cert: IssuedCertificate) -> IssuedCertificate:
        if actor.is_service_admin or (cert.user_id and cert.user_id == actor.user_id) or (
                cert.node_id and cert.node_id == actor.node_id):
            return cert
        raise PermissionDenied("you may only read your own certificates")

    def of_owner(self, actor: Actor, user: User | None = None, node: Node | None = None,
                 limit: int | None = None) -> list[IssuedCertificate]:
        if user is not None:
            self.ctx.authz.require_self_or_admin_of_user(actor, user.id)
        elif node is not None and actor.node_id != node.id:
            self.ctx.authz.require_service_admin(actor)
        stmt = select(IssuedCertificate).order_by(IssuedCertificate.id.desc()).limit(
            self.ctx.page_size(limit))
        stmt = stmt.where(IssuedCertificate.user_id == user.id) if user is not None else \
            stmt.where(IssuedCertificate.node_id == (node.id if node else -1))
        return list(self.session.scalars(stmt))

    def revoke(self, actor: Actor, cert: IssuedCertificate, reason: str) -> IssuedCertificate:
        """The owner (key lost, done) or a service admin revokes one certificate."""
        self.read(actor, cert)
        if reason not in REASONS or reason in ("removeFromCRL", "certificateHold"):
            raise InvalidInput(f"unknown revocation reason {reason[:32]!r}")
        if cert.revoked_at is not None:
            raise InvalidTransition(f"certificate {cert.serial} is already revoked")
        Revoker(self.ctx).revoke(actor, [cert], REASONS[reason], f"revoked by {actor.label}")
        return cert
