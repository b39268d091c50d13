from __future__ import annotations

from typing import Any

from ..apikeys.services import ApiKeyService
from ..nodes.services import NodeService
from ..sync.services import SyncService
from ..vos.services import VOService
from .registry import Call, operation
from .schemas import ApiKeyCreate, ChangesQuery, NodeCreate, NodeQuery, NodeVOs

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
    return SyncService(call.ctx).changes(call.actor, NodeService(call.ctx).get(node),
                                         call.query.since)
