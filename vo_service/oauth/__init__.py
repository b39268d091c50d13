"""The OAuth 2.0 / OpenID Connect provider: clients, signing keys, access and refresh
tokens, the device flow, introspection, revocation and userinfo (authlib carries the
protocol; ``xos_tokens`` signs and verifies)."""
