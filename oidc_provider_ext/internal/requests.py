"""The request boundary: one filter in front of every endpoint (DESIGN.md, "Security classes").

Before a view, oauthlib or the database sees a parameter, :func:`problem` refuses what no valid
request contains: a body that is not UTF-8 (or declares another charset), malformed
percent-escapes, control characters, oversized values, repeated parameters (RFC 6749 3.1), and
JSON values (``claims``) that are not I-JSON (RFC 7493) or nest too deeply. Each endpoint answers
a :class:`Problem` in its own format (:func:`rejecting_bad_requests`). The limits are documented
in docs/flows.md. Private: not part of the documented API.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import unquote_to_bytes

from django.core.exceptions import BadRequest, SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.decorators import classonlymethod

MAX_BODY_BYTES = 64 * 1024
MAX_QUERY_BYTES = 64 * 1024
MAX_NAME_LENGTH = 64
MAX_PARAMETER_LENGTH = 8192  # an id_token_hint fits easily
MAX_HEADER_LENGTH = 8192  # Authorization

# Per-parameter caps, from the columns the values end up in (models/grants.py, DOT's models,
# django-axes' AccessAttempt.username) and from the specs. Anything not listed: MAX_PARAMETER_LENGTH.
PARAMETER_LIMITS = {
    "client_id": 255,  # DOT Application.client_id is 100; 255 leaves room for an error message
    "redirect_uri": 2048,
    "post_logout_redirect_uri": 2048,
    "state": 2048,
    "nonce": 255,  # AuthorizationGrant.nonce
    "login_hint": 255,
    "ui_locales": 255,
    "acr_values": 1024,
    "prompt": 255,
    "max_age": 20,
    "response_type": 255,
    "response_mode": 255,
    "scope": 2048,
    "claims": 2048,  # parsed below: a JSON object, depth <= MAX_JSON_DEPTH
    "code_challenge_method": 10,  # AuthorizationGrant.code_challenge_method
    "grant_type": 255,
    "token_type_hint": 255,
    "request_id": 64,  # ConsentForm.request_id
    "decision": 16,
    "username": 254,  # django-axes stores it in a varchar(255); an email address is <= 254
    "password": 4096,  # Django's own password hashers refuse longer ones
    "tenant": 64,  # Tenant.code
    "resource": 2048,  # ResourceServer.identifier
    "credential": 8192,  # a WebAuthn credential as JSON (passkeys); attestation "none" is ~1 KB
}
# RFC 8707 2: the one parameter a request may repeat (one value per resource it names), in the
# query or in the body; at most MAX_REPEATS values.
REPEATABLE_PARAMETERS = ("resource",)
MAX_REPEATS = 10
# RFC 8707 2: a resource indicator the AS cannot parse is invalid_target, not invalid_request.
PARAMETER_ERRORS = {"resource": "invalid_target"}
# RFC 7636 4.2: BASE64URL(SHA256(verifier)) is 43 characters; 4.1 allows 43..128 unreserved ones.
CODE_CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
JSON_PARAMETERS = ("claims", "credential")  # OIDC Core 5.5; a WebAuthn PublicKeyCredential JSON
MAX_JSON_DEPTH = 8  # {"userinfo": {"name": {"values": [...]}}} is 4
MAX_SAFE_INTEGER = 2**53 - 1  # RFC 7493 2.2

# C0 controls (tab, CR and LF only in values: a pretty-printed claims request), DEL and C1.
_CONTROL_IN_VALUE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_HEADER_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_FORM = "application/x-www-form-urlencoded"


# RFC 6749 4.1.2.1 / 5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
_NOT_IN_ERROR_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
MAX_ERROR_DESCRIPTION = 500


def error_description(text: str) -> str:
    """``text`` as an RFC 6749 error_description: every character outside its set (a double quote,
    a backslash, non-ASCII, controls) becomes ``?``, and it is cut to a sane length. Every
    error_description this provider emits goes through here (views/backchannel.oauth_error,
    views/authorize.client_error, the validator's own OAuth2Errors, the token endpoint's body)."""
    return _NOT_IN_ERROR_DESCRIPTION.sub("?", str(text))[:MAX_ERROR_DESCRIPTION]


@dataclass(frozen=True)
class Problem:
    """What is wrong with a request. ``parameter`` is None when the request as a whole is bad
    (unreadable body, broken encoding): then no parameter of it can be trusted."""

    description: str
    parameter: str | None = None
    # A repeated parameter makes the request ambiguous (which one did the client send?).
    repeated: bool = False

    def __str__(self) -> str:
        return self.description

    @property
    def error(self) -> str:
        """The RFC 6749 / RFC 8707 error code for this problem."""
        return PARAMETER_ERRORS.get(self.parameter or "", "invalid_request")


def value_problem(name: str, value: str) -> str | None:
    """What is wrong with one parameter value, or None. The rules of :func:`problem` for one value
    (a view that needs a parameter of a refused request, e.g. ``state``, checks it with this)."""
    limit = PARAMETER_LIMITS.get(name, MAX_PARAMETER_LENGTH)
    if len(value) > limit:
        return f"The parameter {name!r} is longer than {limit} characters."
    if _CONTROL_IN_VALUE.search(value):
        return f"The parameter {name!r} contains a control character."
    if name == "code_challenge" and not CODE_CHALLENGE.fullmatch(value):
        return "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 4.2)."
    if name in JSON_PARAMETERS and value:
        return _json_problem(name, value)
    return None


def _json_problem(name: str, value: str) -> str | None:
    # Depth first, without recursion: json.loads itself overflows the stack on deep nesting.
    depth, in_string, escaped = 0, False, False
    for char in value:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return f"The parameter {name!r} nests deeper than {MAX_JSON_DEPTH} levels."
        elif char in "]}":
            depth -= 1

    def refuse_constant(constant):
        raise ValueError(f"{constant} is not JSON")

    def unique_keys(pairs):
        keys = [key for key, _value in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate member name")  # RFC 7493 2.3
        return dict(pairs)

    try:
        parsed = json.loads(value, parse_constant=refuse_constant, object_pairs_hook=unique_keys)
    except (ValueError, RecursionError):
        return f"The parameter {name!r} is not valid JSON."
    if not isinstance(parsed, dict):
        return f"The parameter {name!r} must be a JSON object."
    stack = [parsed]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, member in item.items():
                if not _is_clean_text(key):
                    return f"The parameter {name!r} has a member name with a control character."
                stack.append(member)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if not _is_clean_text(item):
                return f"The parameter {name!r} has a string with a control character."
        elif isinstance(item, float) and not math.isfinite(item):
            return f"The parameter {name!r} has a number out of range."
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_SAFE_INTEGER:
            return f"The parameter {name!r} has a number out of range."  # RFC 7493 2.2
    return None


def _is_clean_text(text: str) -> bool:
    # No control characters, no lone surrogates (RFC 7493 2.1; PostgreSQL refuses both).
    if _CONTROL.search(text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _raw_problem(raw: bytes, where: str) -> Problem | None:
    """Malformed percent-escapes and invalid UTF-8 in a query string or form body, which Django's
    QueryDict would silently turn into U+FFFD (and oauthlib refuses with an exception)."""
    if _BAD_ESCAPE.search(raw):
        return Problem(f"The {where} has a malformed percent-escape.")
    for pair in raw.split(b"&"):
        try:
            unquote_to_bytes(pair.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return Problem(f"The {where} is not UTF-8.")
    return None


def _raw_query(request: HttpRequest) -> bytes:
    raw = request.META.get("QUERY_STRING", "")
    if isinstance(raw, bytes):
        return raw
    try:
        return raw.encode("iso-8859-1")  # WSGI (PEP 3333): the bytes as latin-1
    except UnicodeEncodeError:
        return raw.encode("utf-8", "surrogateescape")


def problem(
    request: HttpRequest, repeatable_form_fields: tuple[str, ...] = (), *, reads_parameters: bool = True
) -> Problem | None:
    """What is wrong with the request, or None.

    RFC 6749 3.1: "Request and response parameters MUST NOT be included more than once." Our own
    HTML forms may repeat ``repeatable_form_fields`` in a POST body (checkbox lists). An endpoint
    that takes no parameters (``reads_parameters=False``: JWKS, discovery) ignores them, as
    RFC 6749 3.1 asks for unrecognised ones; its body is still bounded.
    """
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return Problem("The Content-Length header is not a number.")
    if length > MAX_BODY_BYTES or length < 0:
        return Problem("The request body is too large.")
    if not reads_parameters:
        return None
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    # C0 and DEL only: WSGI hands header bytes over as latin-1, so \x80-\xff are just bytes that
    # the client authentication code refuses as invalid_client.
    if len(authorization) > MAX_HEADER_LENGTH or _HEADER_CONTROL.search(authorization):
        return Problem("The Authorization header is malformed.")
    raw_query = _raw_query(request)
    if len(raw_query) > MAX_QUERY_BYTES:
        return Problem("The query string is too long.")
    found = _raw_problem(raw_query, "query string")
    if found:
        return found
    sources = [request.GET]
    if request.method == "POST":
        content_type = request.content_type or ""
        charset = (request.content_params or {}).get("charset", "utf-8").strip().lower()
        if charset not in ("utf-8", "utf8", "us-ascii"):
            return Problem("The request body must be UTF-8.")
        if content_type == _FORM:
            found = _raw_problem(request.body, "request body")
            if found:
                return found
        sources.append(request.POST)
    seen: set[str] = set()
    for source in sources:
        for name, values in source.lists():
            repeatable = (source is not request.GET and name in repeatable_form_fields) or (
                name in REPEATABLE_PARAMETERS and len(values) <= MAX_REPEATS
            )
            if (len(values) > 1 and not repeatable) or name in seen:
                return Problem(f"The parameter {name[:64]!r} is repeated.", name, repeated=True)
            seen.add(name)
            if len(name) > MAX_NAME_LENGTH or _CONTROL.search(name):
                return Problem("A parameter name is too long or contains a control character.")
            for value in values:
                description = value_problem(name, value)
                if description:
                    return Problem(description, name)
    return None


def csrf_failure(request: HttpRequest) -> HttpResponse | None:
    """Django's CSRF check (the CSRF_FAILURE_VIEW response), or None when it passes."""
    return CsrfViewMiddleware(_no_response).process_view(request, _no_response, (), {})


def _no_response(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise AssertionError("the CSRF check runs no view")


def csrf_failed(request: HttpRequest) -> bool:
    """Django's CSRF check, for a form POSTed to a view that must be csrf_exempt for other POSTs
    (relying parties post cross-site to the authorization and end-session endpoints)."""
    return csrf_failure(request) is not None


def decorated_view(*decorators: Callable[[Callable], Callable]):
    """Class decorator for a class-based view: ``decorators`` (view-function decorators, outermost
    first) wrap the function ``as_view()`` returns, once. ``method_decorator(name="dispatch")``
    wraps ``dispatch`` in them anew on every request (``functools.wraps`` and a closure per
    decorator, ~5 µs each): on the endpoints a client calls for every token, that is felt.

    The decorators see the request before the view instance exists (``setup()``); each subclass's
    own ``decorated_view`` wraps its parents' (outermost), as method decorators on an inherited
    ``dispatch`` would."""

    def decorate(cls):
        if "as_view" in cls.__dict__:
            raise TypeError(f"{cls.__name__} defines as_view(): decorate it there instead")

        def as_view(klass, **initkwargs):
            view = super(cls, klass).as_view(**initkwargs)
            for decorator in reversed(decorators):
                view = decorator(view)
            return view

        cls.as_view = classonlymethod(as_view)
        return cls

    return decorate


def rejecting_bad_requests(
    respond: Callable[[HttpRequest, Problem], HttpResponse],
    repeatable_form_fields: tuple[str, ...] = (),
    *,
    csrf: bool = False,
    reads_parameters: bool = True,
):
    """View decorator: the request boundary. Answers ``respond(request, problem)`` instead of
    running the view when :func:`problem` finds something; each endpoint answers in its own
    format.

    ``csrf=True`` for CSRF-protected pages: Django's CSRF middleware reads the body before any
    view, so such a view is exempted from the middleware and the same check runs here, after the
    body is known to be readable.
    """

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            try:
                found = problem(request, repeatable_form_fields, reads_parameters=reads_parameters)
            except (BadRequest, SuspiciousOperation, MultiPartParserError, UnicodeError, ValueError):
                # e.g. RequestDataTooBig, a broken multipart body, a charset Django refuses
                found = Problem("The request body cannot be read.")
            if found:
                return respond(request, found)
            if csrf:
                failure = csrf_failure(request)
                if failure is not None:
                    return failure
            return view(request, *args, **kwargs)

        wrapped.__dict__["oidc_request_boundary"] = True
        if csrf:
            wrapped.__dict__["csrf_exempt"] = True  # checked above instead
        return wrapped

    return decorator
