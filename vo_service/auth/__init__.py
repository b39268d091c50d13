"""Login sources: VO passwords, the institutional LDAP directory, failed-login throttling."""
