"""Certificates over the JSON API: request XOS, SSH, node and host certificates; list,
read and revoke them. The CA's public material and OCSP live in ``ca_http``."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from flask import current_app

from ..nodes.services import NodeService
from ..pki.authority import authority
from ..pki.revocation import certificate_record
from ..pki.services import CertificateService
from ..users.services import UserService
from .registry import Call, operation
from .schemas import (
    CertificateQuery,
    NodeCertificateRequest,
    Revocation,
    SSHHostCertificateRequest,
    SSHUserCertificateRequest,
    UserCertificateRequest,
)

TAG = "certificates"


def _service(call: Call) -> CertificateService:
    return CertificateService(call.ctx, authority(), current_app.config)


def _pem(*certs: Any) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _me(call: Call) -> Any:
    return UserService(call.ctx).get(str(call.ctx.authz.require_user(call.actor)))


@operation("POST", "/certificates/xos", summary="Issue an XOS certificate for a CSR made on"
           " the caller's machine (active members)", tag=TAG, body=UserCertificateRequest,
           status=201)
def issue_xos(call: Call, body: UserCertificateRequest) -> dict[str, Any]:
    service = _service(call)
    row, cert = service.issue_user(call.actor, _me(call), body.csr, vos=body.vos,
                                   groups=body.groups, roles=body.roles,
                                   hours=body.lifetime_hours)
    return {**certificate_record(row), "certificate": _pem(cert),
            "chain": _pem(*service.loaded.issuing.chain)}


@operation("POST", "/certificates/ssh", summary="Issue an SSH user certificate (principal ="
           " the caller's Unix name)", tag=TAG, body=SSHUserCertificateRequest, status=201)
def issue_ssh(call: Call, body: SSHUserCertificateRequest) -> dict[str, Any]:
    row, line = _service(call).issue_ssh_user(call.actor, _me(call), body.public_key,
                                              body.lifetime_hours)
    return {**certificate_record(row), "certificate": line}


@operation("POST", "/nodes/<node>/certificate", summary="Issue a node certificate (the node"
           " itself or a service admin)", tag=TAG, body=NodeCertificateRequest, status=201)
def issue_node(call: Call, body: NodeCertificateRequest, node: str) -> dict[str, Any]:
    service = _service(call)
    row, cert = service.issue_node(call.actor, NodeService(call.ctx).get(node), body.csr,
                                   body.lifetime_days)
    return {**certificate_record(row), "certificate": _pem(cert),
            "chain": _pem(*service.loaded.issuing.chain)}


@operation("POST", "/nodes/<node>/ssh-host-certificate", summary="Certify a node's SSH host"
           " key (the node itself or a service admin)", tag=TAG,
           body=SSHHostCertificateRequest, status=201)
def issue_host(call: Call, body: SSHHostCertificateRequest, node: str) -> dict[str, Any]:
    row, line = _service(call).issue_ssh_host(call.actor, NodeService(call.ctx).get(node),
                                              body.public_key, body.lifetime_days)
    return {**certificate_record(row), "certificate": line}


@operation("GET", "/certificates", summary="Certificates of a user or node, newest first"
           " (default: the caller's)", tag=TAG, query=CertificateQuery)
def list_certificates(call: Call) -> dict[str, Any]:
    q, service = call.query, _service(call)
    if q.node:
        rows = service.of_owner(call.actor, node=NodeService(call.ctx).get(q.node),
                                limit=q.limit)
    else:
        user = UserService(call.ctx).get(q.user) if q.user else _me(call)
        rows = service.of_owner(call.actor, user=user, limit=q.limit)
    return {"items": [certificate_record(r) for r in rows]}


@operation("GET", "/certificates/<serial>", summary="Read a certificate by serial (hex)",
           tag=TAG)
def get_certificate(call: Call, serial: str) -> dict[str, Any]:
    service = _service(call)
    return certificate_record(service.read(call.actor, service.get(serial)))


@operation("POST", "/certificates/<serial>/revoke", summary="Revoke a certificate (its owner"
           " or a service admin)", tag=TAG, body=Revocation)
def revoke_certificate(call: Call, body: Revocation, serial: str) -> dict[str, Any]:
    service = _service(call)
    return certificate_record(service.revoke(call.actor, service.get(serial), body.reason))
