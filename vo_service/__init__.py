"""The VO manager: users, VOs, groups, roles, memberships, nodes, numbers, audit."""

from .app import create_app

__all__ = ["create_app"]
