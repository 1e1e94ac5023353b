"""What the back-channel endpoints (token, revocation, introspection, userinfo) share: RFC 6749
JSON errors and the request shape RFC 6749 3.2 / RFC 7009 2.1 / RFC 7662 2.1 ask for."""

from __future__ import annotations

import base64
import contextlib
import functools
from urllib.parse import unquote

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import View

from oidc_provider_ext.internal.cors import cors_endpoint
from oidc_provider_ext.internal.requests import decorated_view, error_description, rejecting_bad_requests


def oauth_error(error: str, description: str, status: int = 400, **headers) -> JsonResponse:
    response = JsonResponse(
        {"error": error, "error_description": error_description(description)}, status=status
    )
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def claimed_client_ids(request) -> set[str]:
    """The client_id in the body and in HTTP Basic credentials (RFC 6749 2.3.1), unverified."""
    claimed = {request.POST.get("client_id", "")}
    scheme, _space, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            claimed.add(unquote(base64.b64decode(credentials).decode("ascii").split(":", 1)[0]))
    return claimed - {""}


def form_post_only(request):
    """RFC 6749 3.2 / RFC 7009 2.1 / RFC 7662 2.1: POST with a form-encoded body."""
    if request.method != "POST":
        return oauth_error("invalid_request", "Use POST.", status=405, Allow="POST")
    content_type = request.content_type or ""
    if content_type != "application/x-www-form-urlencoded":
        return oauth_error("invalid_request", "The body must be application/x-www-form-urlencoded.")
    if request.GET:
        # RFC 9700 4.13 spirit: credentials and tokens never travel in the query string.
        return oauth_error(
            "invalid_request", "Parameters must be sent in the request body, not the query string."
        )
    return None


class JsonErrorsMixin(View):
    """A wrong HTTP method is answered like every other error of a back-channel endpoint."""

    def http_method_not_allowed(self, request, *args, **kwargs):
        allowed = ", ".join(m.upper() for m in self.http_method_names if hasattr(self, m))
        return oauth_error("invalid_request", f"Use {allowed}.", status=405, Allow=allowed)


def invalid_request(request, problem):
    return oauth_error(problem.error, problem.description)


#: RFC 6749 5.2: a 401 ``invalid_client`` carries a challenge "matching the authentication scheme
#: used by the client": HTTP Basic (2.3.1) where clients authenticate. oauthlib writes ``Bearer``,
#: the scheme of access tokens at a resource server (RFC 6750), on every 401 it answers.
CLIENT_AUTHENTICATION_CHALLENGE = 'Basic realm="oidc"'


def _client_authentication_challenge(view):
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if response.status_code == 401:
            response["WWW-Authenticate"] = CLIENT_AUTHENTICATION_CHALLENGE
        return response

    return wrapped


def form_endpoint(view_class=None, *, browser_readable: bool = False, sensitive: tuple[str, ...] = ()):
    """Class decorator for the RFC 6749 form endpoints (token, revocation, introspection): no CSRF
    (clients authenticate themselves, not with our cookies) and no sign-in required (a site with
    ``LoginRequiredMiddleware``), the request boundary answering in RFC 6749 JSON, the ``sensitive``
    POST parameters hidden from error reports and, when ``browser_readable``, CORS for the client
    the request names (outermost, so the boundary's errors are readable too).

    Applied once to the view function (``decorated_view``). A view built on DOT's has DOT's
    ``dispatch`` decorated with ``csrf_exempt`` and ``login_not_required`` anew on every request:
    it names the undecorated one (``dispatch = View.dispatch``), as these decorators cover it."""

    def decorate(cls):
        decorators = [
            csrf_exempt,
            login_not_required,
            sensitive_post_parameters(*sensitive) if sensitive else None,
            rejecting_bad_requests(invalid_request),
            _client_authentication_challenge,
        ]
        if browser_readable:
            decorators.insert(0, cors_endpoint(methods=["POST"], client_ids=claimed_client_ids))
        return decorated_view(*(d for d in decorators if d is not None))(cls)

    return decorate(view_class) if view_class is not None else decorate
