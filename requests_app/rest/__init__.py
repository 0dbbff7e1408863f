"""Dogtag's CA REST API (`/pki/rest/...`, `/ca/rest/...`), as Dogtag 11 serves it and the
`dogtag-pki` Python client (`pki.cert.CertClient`) consumes it: enrollment templates,
enrollment, request status, certificates and their search (public); the agent's request
queue, review and actions, and certificate revocation (agents only).

Modules: `ids` (how Dogtag's request IDs and serials map to ours), `errors` (Dogtag's
PKIException JSON), `shapes` (the JSON documents), `auth` (who the agent is: a client
certificate, or HTTP basic with the second factor), `nonces` (the review's single-use
nonces), `views` (public resources), `agent_views` (agent resources), `urls`.
"""
