"""Request hygiene shared by every endpoint: the checks RFC 6749 3.1 and common sense ask for
before a parameter is even looked at. Private: not part of the documented API."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware

MAX_BODY_BYTES = 64 * 1024
MAX_PARAMETER_LENGTH = 8192  # an id_token_hint or a claims request fits easily


def problem(request: HttpRequest, repeatable_form_fields: tuple[str, ...] = ()) -> str | None:
    """What is wrong with the request's parameters, or None.

    RFC 6749 3.1: "Request and response parameters MUST NOT be included more than once." Our own
    HTML forms may repeat ``repeatable_form_fields`` in a POST body (checkbox lists).
    """
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return "The Content-Length header is not a number."
    if length > MAX_BODY_BYTES:
        return "The request body is too large."
    sources = [request.GET]
    if request.method == "POST":
        sources.append(request.POST)
    seen: set[str] = set()
    for source in sources:
        for name, values in source.lists():
            repeatable = source is not request.GET and name in repeatable_form_fields
            if (len(values) > 1 and not repeatable) or name in seen:
                return f"The parameter {name!r} is repeated."
            seen.add(name)
            if len(name) > 256 or any(len(value) > MAX_PARAMETER_LENGTH for value in values):
                return f"The parameter {name[:64]!r} is too long."
    return None


def csrf_failed(request: HttpRequest) -> bool:
    """Django's CSRF check, for a form POSTed to a view that must be csrf_exempt for other POSTs
    (relying parties post cross-site to the authorization and end-session endpoints)."""
    return CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {}) is not None


def rejecting_bad_requests(
    respond: Callable[[HttpRequest, str], HttpResponse], repeatable_form_fields: tuple[str, ...] = ()
):
    """View decorator: answer ``respond(request, description)`` instead of running the view when
    :func:`problem` finds something. Each endpoint answers in its own format."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            try:
                description = problem(request, repeatable_form_fields)
            except (SuspiciousOperation, MultiPartParserError, UnicodeDecodeError, ValueError):
                # e.g. RequestDataTooBig, a broken multipart body
                description = "The request body cannot be read."
            if description:
                return respond(request, description)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
