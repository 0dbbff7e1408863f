"""Template context every page gets."""

from django.conf import settings


def agent_security(request) -> dict:
    """`agent_mfa_off`: the second factor is switched off (DEBUG development only), which
    every page, the agent pages and the admin included, says in a banner."""
    return {"agent_mfa_off": not settings.AGENT_REQUIRE_MFA}
