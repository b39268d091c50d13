"""Nodes (resources): register them and choose which VOs may use each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, exists, select

from ..authz import Actor
from ..context import ServiceContext
from ..errors import AlreadyExists, InvalidInput, NotFound
from ..names import validate_node_name
from ..timeutil import iso
from ..vos.models import VO
from ..vos.services import VOService
from .models import Node, NodeVO

MAX_VOS_PER_NODE = 1000


class NodeService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    def record(self, node: Node) -> dict[str, Any]:
        return {"name": node.name, "description": node.description,
                "vos": [vo.name for vo in self.vos_of(node)],
                "created_at": iso(node.created_at), "last_contact": iso(node.last_contact)}

    def get(self, name: str) -> Node:
        node = self.session.scalar(select(Node).where(Node.name == name)) \
            if len(name) <= 253 else None
        if node is None:
            raise NotFound(f"no node {name[:64]!r}")
        return node

    def read(self, actor: Actor, name: str) -> Node:
        node = self.get(name)
        if actor.node_id != node.id:
            self.ctx.authz.require_service_admin(actor)
        return node

    def vos_of(self, node: Node) -> list[VO]:
        return list(self.session.scalars(select(VO).join(NodeVO, NodeVO.vo_id == VO.id)
                                         .where(NodeVO.node_id == node.id).order_by(VO.name)))

    def page(self, actor: Actor, vo: VO | None = None, after: str | None = None,
             limit: int | None = None) -> tuple[list[Node], str | None]:
        if vo is None:
            self.ctx.authz.require_service_admin(actor)
        else:
            self.ctx.authz.require_vo_admin(actor, vo)
        size = self.ctx.page_size(limit)
        stmt = select(Node).order_by(Node.name).limit(size + 1)
        if vo is not None:
            stmt = stmt.where(exists().where(NodeVO.node_id == Node.id, NodeVO.vo_id == vo.id))
        if after:
            stmt = stmt.where(Node.name > after)
        rows = list(self.session.scalars(stmt))
        return rows[:size], (rows[size - 1].name if len(rows) > size else None)

    def register(self, actor: Actor, name: str, description: str = "",
                 vos: list[str] | None = None) -> Node:
        self.ctx.authz.require_service_admin(actor)
        name = validate_node_name(name)
        if self.session.scalar(select(exists().where(Node.name == name))):
            raise AlreadyExists(f"node {name!r} is already registered")
        if not isinstance(description, str) or len(description) > 512:
            raise InvalidInput("description must be text of at most 512 characters")
        chosen = self._resolve(vos or [])
        node = Node(name=name, description=description,
                    vos_changed_revision=self.ctx.revisions.bump())
        self.session.add(node)
        self.session.flush()
        self.session.add_all(NodeVO(node_id=node.id, vo_id=vo.id) for vo in chosen)
        self.session.flush()
        self.ctx.audit.append(actor.label, "node.register", "node", name,
                              after=self.record(node))
        return node

    def set_vos(self, actor: Actor, node: Node, vos: list[str]) -> Node:
        """Replace the node's VO set; the node takes a fresh snapshot at its next sync."""
        self.ctx.authz.require_service_admin(actor)
        chosen = self._resolve(vos)
        before = self.record(node)
        self.session.execute(delete(NodeVO).where(NodeVO.node_id == node.id))
        self.session.add_all(NodeVO(node_id=node.id, vo_id=vo.id) for vo in chosen)
        node.vos_changed_revision = self.ctx.revisions.bump()
        self.session.flush()
        self.ctx.audit.append(actor.label, "node.vos", "node", node.name, before=before,
                              after=self.record(node))
        return node

    def _resolve(self, names: list[str]) -> list[VO]:
        if len(names) > MAX_VOS_PER_NODE:
            raise InvalidInput(f"a node may serve at most {MAX_VOS_PER_NODE} VOs")
        if len(set(names)) != len(names):
            raise InvalidInput("a VO is named twice")
        vos = VOService(self.ctx)
        return [vos.get(n) for n in names]
