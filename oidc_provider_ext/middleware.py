"""``OPSessionMiddleware``: a browser whose sign-in was ended elsewhere is signed out everywhere.

Ending an OP session (the user signing out another device on /connect/sessions, an operator, the
user's deactivation, the end of a tenant membership) marks the row ended; the provider's own views
never honour it again. This middleware makes the rest of the site agree: on the browser's next
request its ended OP sessions are dropped, and when none is left it is signed out of Django too
(one indexed query per request of a signed-in browser). Put it after ``AuthenticationMiddleware``.
"""

from __future__ import annotations

from .internal.op_sessions import SESSION_KEY, browser_entries


class OPSessionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        if session is not None and hasattr(request, "user") and SESSION_KEY in session:
            browser_entries(request)
        return self.get_response(request)
