"""Dogtag's end-entity XML protocol (what certmonger's dogtag-submit speaks), as a protocol
adapter over the services:

    protocol  profile IDs, request fields and the XML replies (no views, no state changes)
    views     the servlets: parse, call one service, answer in Dogtag's XML
    urls      the servlet paths (/ca/ee/ca/..., /ca/agent/ca/...)

`from requests_app import dogtag` gives the protocol's public names.
"""

from .protocol import ProtocolError, profile_for_id, profile_ids

__all__ = ["ProtocolError", "profile_for_id", "profile_ids"]
