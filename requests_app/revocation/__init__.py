"""Revocation status for relying parties, as a protocol adapter over the services (which
sign and store CRLs: services.crls):

    ocsp    the OCSP responder: status read live, answers signed by the CA's key backend
    views   the CRL distribution points, the OCSP endpoint, the agent's certificate page
            with Revoke and Release hold
    urls    the public endpoints (the agent pages are in requests_app.agent_urls)
    forms   the revocation form of the agent page and the admin action
"""
