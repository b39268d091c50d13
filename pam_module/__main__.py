"""``python -m pam_module {auth,account,session}``: the same as the ``xos-pam`` script."""

from pam_module.cli import entry

entry()
