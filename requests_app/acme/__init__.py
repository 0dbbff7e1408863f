"""ACME (RFC 8555) with agent-approved accounts: a protocol adapter of the Certificate Manager.

Its own Django app (label "acme") so that its tables and migrations stand apart. Accounts
are bound to an agent's External Account Binding; certificates are issued only through the
Certificate Manager's services (a CertificateRequest with channel "acme")."""
