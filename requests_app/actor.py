"""Who is acting, for changes made through Django itself (the admin, a shell) that reach a
service by a model signal instead of a call with `actor=`: the middleware sets the logged-in
user for the length of a request; `acting_as` sets it around any block of code."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

_actor: ContextVar = ContextVar("ca_portal_actor", default=None)


@contextmanager
def acting_as(user):
    """Within the block, changes seen by model signals are made by user (None: "system")."""
    token = _actor.set(user)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor():
    """The user acting now, or None (a command, a shell, a worker: "system")."""
    value = _actor.get()
    if callable(value):  # the middleware's lazy request.user
        value = value()
    if value is None or not getattr(value, "is_authenticated", False):
        return None
    return value


class CurrentActorMiddleware:
    """Makes the request's user the actor of what model signals report (after
    AuthenticationMiddleware)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with acting_as(lambda: getattr(request, "user", None)):
            return self.get_response(request)
