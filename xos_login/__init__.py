"""xos-login: one login for a researcher, cached tokens and certificates."""
