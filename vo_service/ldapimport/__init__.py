"""Import users and group memberships of a VO from an institutional LDAP directory.

A pipeline of small steps: ``spec`` (what the operator asks, checked) > ``reader`` (what
the directory says, sanitized) > ``plan`` (the preview: what would change, changing
nothing) > ``apply`` (the change, through the domain services, audited). Run again with
no directory change, the plan is empty: the import doubles as a sync."""

from .apply import Outcome, apply_plan, import_actor, work_size
from .models import LdapManaged
from .plan import Conflict, Plan, UserStep, compute_plan, plan_summary
from .preview import preview
from .reader import DirectoryView, Person, Skipped, read_directory
from .spec import ImportSpec, build_spec, parse_mapping

__all__ = [
    "Conflict", "DirectoryView", "ImportSpec", "LdapManaged", "Outcome", "Person", "Plan",
    "Skipped", "UserStep", "apply_plan", "build_spec", "compute_plan", "import_actor",
    "parse_mapping", "plan_summary", "preview", "read_directory", "work_size",
]
