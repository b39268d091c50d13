"""Certificates of the VO service: issuing XOS, node and SSH certificates through ``ca/``,
recording every one, revoking them when the access they carried is withdrawn, and
publishing CRLs and OCSP answers."""
