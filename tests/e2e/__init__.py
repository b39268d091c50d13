"""End-to-end tests that run real system tools (sshd, ssh, PAM, NSS) inside private namespaces."""
