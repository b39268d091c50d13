from __future__ import annotations

import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from flask import current_app

from ..apikeys.services import ApiKeyService
from ..authz import Actor
from ..db import db
from ..nodes.enrolment import EnrolmentService
from ..nodes.services import NodeService
from ..oauth.server import tokens
from ..pki.authority import authority
from ..pki.services import CertificateService
from ..sync.services import SyncService
from ..sync.watch import revision_watch
from ..timeutil import iso
from ..vos.services import VOService
from .registry import Call, operation
from .schemas import (
    ApiKeyCreate,
    ChangesQuery,
    Enrolment,
    EnrolmentTokenCreate,
    NodeCreate,
    NodeQuery,
    NodeVOs,
)

TAG = "nodes"


@operation("POST", "/nodes", summary="Register a node (service admin)", tag=TAG,
           body=NodeCreate, status=201)
def register_node(call: Call, body: NodeCreate) -> dict[str, Any]:
    nodes = NodeService(call.ctx)
    return nodes.record(nodes.register(call.actor, body.name, body.description, body.vos))


@operation("GET", "/nodes", summary="List nodes (service admin; VO admins with ?vo=)", tag=TAG,
           query=NodeQuery, paged=True)
def list_nodes(call: Call) -> dict[str, Any]:
    q = call.query
    nodes = NodeService(call.ctx)
    vo = VOService(call.ctx).get(q.vo) if q.vo else None
    rows, nxt = nodes.page(call.actor, vo, q.after, q.limit)
    return {"items": [nodes.record(n) for n in rows], "next": nxt}


@operation("GET", "/nodes/<node>", summary="Read a node", tag=TAG)
def get_node(call: Call, node: str) -> dict[str, Any]:
    nodes = NodeService(call.ctx)
    return nodes.record(nodes.read(call.actor, node))


@operation("PUT", "/nodes/<node>/vos", summary="Choose the VOs a node serves (service admin)",
           tag=TAG, body=NodeVOs)
def set_node_vos(call: Call, body: NodeVOs, node: str) -> dict[str, Any]:
    nodes = NodeService(call.ctx)
    return nodes.record(nodes.set_vos(call.actor, nodes.get(node), body.vos))


@operation("POST", "/nodes/<node>/api-keys", summary="Issue a node's API key (service admin)",
           tag=TAG, body=ApiKeyCreate, status=201)
def issue_node_key(call: Call, body: ApiKeyCreate, node: str) -> dict[str, Any]:
    target = NodeService(call.ctx).get(node)
    key, secret = ApiKeyService(call.ctx).issue(call.actor, node=target,
                                                description=body.description)
    return {"key_id": key.key_id, "api_key": secret}


@operation("GET", "/nodes/<node>/snapshot", summary="The node's whole account view at a"
           " revision (the node itself, or a service admin)", tag="sync")
def snapshot(call: Call, node: str) -> dict[str, Any]:
    return SyncService(call.ctx).snapshot(call.actor, NodeService(call.ctx).get(node))


@operation("GET", "/nodes/<node>/changes", summary="What changed in the node's account view"
           " since a revision", tag="sync", query=ChangesQuery)
def changes(call: Call, node: str) -> dict[str, Any]:
    """With ``wait``, the answer waits until something of the node's VOs changed (or the
    time is up): a revocation reaches a long-polling node within a second. The waiting
    costs nothing per node: one watcher per process looks at the revision and wakes the
    nodes whose VOs a new revision touched (``sync.watch``). Run the service with threaded
    workers (gunicorn --threads) when many nodes long-poll."""
    deadline = time.monotonic() + call.query.wait
    sync = SyncService(call.ctx)
    vo_ids: frozenset[int] | None = None
    while True:
        target = NodeService(call.ctx).get(node)
        answer = sync.changes(call.actor, target, call.query.since)
        if answer.get("resync_required") or answer["revision"] > call.query.since and (
                answer["users"] or answer["groups"] or answer["removed_groups"]
                or answer["members_added"] or answer["members_removed"]) \
                or time.monotonic() >= deadline:
            return answer
        if vo_ids is None:
            vo_ids = sync.vo_ids(target)
        db.session.commit()  # end the read: the next answer must see what commits meanwhile
        revision_watch(current_app._get_current_object()).wait(  # type: ignore[attr-defined]
            answer["revision"], vo_ids, deadline - time.monotonic())


@operation("POST", "/nodes/<node>/enrolment-tokens", summary="Make a one-time enrolment token"
           " for a node (service admin; shown once)", tag=TAG, body=EnrolmentTokenCreate,
           status=201)
def issue_enrolment_token(call: Call, body: EnrolmentTokenCreate, node: str) -> dict[str, Any]:
    token, expires = EnrolmentService(call.ctx).issue(
        call.actor, NodeService(call.ctx).get(node),
        body.hours or current_app.config["ENROLMENT_TOKEN_HOURS"])
    return {"token": token, "expires_at": iso(expires)}


@operation("POST", "/enroll", summary="A node enrols with its one-time token: its API key,"
           " certificate, CA chain, SSH CA keys, JWKS and SSH host certificate", tag=TAG,
           body=Enrolment, public=True)
def enroll(call: Call, body: Enrolment) -> dict[str, Any]:
    enrolled = EnrolmentService(call.ctx).redeem(body.token)
    actor = Actor(label=f"node:{enrolled.node.name}", node_id=enrolled.node.id)
    loaded = authority()
    certificates = CertificateService(call.ctx, loaded, current_app.config)
    row, cert = certificates.issue_node(actor, enrolled.node, body.csr)
    answer: dict[str, Any] = {
        "node": enrolled.node.name,
        "api_key": enrolled.api_key,
        "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "certificate_serial": row.serial,
        "chain": "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                         for c in loaded.issuing.chain),
        "ssh_ca_keys": loaded.ssh_public_lines(),
        "jwks": tokens().keys.jwks(),
        "issuer": current_app.config["PUBLIC_URL"].rstrip("/"),
        "vos": [vo.name for vo in NodeService(call.ctx).vos_of(enrolled.node)],
    }
    if body.ssh_host_key:
        answer["ssh_host_certificate"] = certificates.issue_ssh_host(
            actor, enrolled.node, body.ssh_host_key)[1]
    return answer
