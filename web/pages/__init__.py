"""The portal's pages, one feature per module; importing them registers their routes."""

from . import (  # noqa: F401
    account,
    admin,
    audit,
    certificates,
    errors,
    groups,
    ldap_import,
    member,
    members,
    nodes,
)
