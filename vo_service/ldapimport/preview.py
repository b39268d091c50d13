"""One call from a spec to a plan: check the caller, read the directory, compute."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..auth.ldap import LdapDirectory
from ..authz import Actor
from ..context import ServiceContext
from ..errors import ConfigurationError
from ..vos.services import VOService
from .plan import Plan, compute_plan
from .reader import read_directory
from .spec import ImportSpec


def preview(ctx: ServiceContext, actor: Actor, spec: ImportSpec,
            config: Mapping[str, Any]) -> Plan:
    """The plan for ``spec``. The caller's right to the VO is checked before the
    directory is asked anything. ConfigurationError when LDAP_URL is not set."""
    vo = VOService(ctx).get(spec.vo)
    ctx.authz.require_vo_admin(actor, vo)
    if not config.get("LDAP_URL"):
        raise ConfigurationError("no institutional directory is configured (LDAP_URL)")
    view = read_directory(LdapDirectory(config), spec, ctx.reserved_names)
    return compute_plan(ctx, actor, spec, view)
