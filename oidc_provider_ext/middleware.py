"""``OPSessionMiddleware``: a browser whose sign-in was ended elsewhere is signed out everywhere.
``BearerEndpointsMiddleware`` and ``CSPMiddleware``: the bearer endpoints without the browser's
middleware (below).

Ending an OP session (the user signing out another device on /connect/sessions, an operator, the
user's deactivation, the end of a tenant membership) marks the row ended; the provider's own views
never honour it again. This middleware makes the rest of the site agree: on the browser's next
request its ended OP sessions are dropped, and when none is left it is signed out of Django too
(one indexed query per request of a signed-in browser). Put it after ``AuthenticationMiddleware``.
With ``oidc_provider_ext.backends.ModelBackend`` in ``AUTHENTICATION_BACKENDS``, that query reads the
user's row too and ``request.user`` is loaded from it (Django verifies it as its own): one statement
for both instead of ``AuthenticationMiddleware``'s user read and this one.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import csp.constants
import csp.middleware
from django.conf import settings
from django.http import HttpResponse
from django.urls import NoReverseMatch, Resolver404, ResolverMatch, get_script_prefix, resolve, reverse
from django.utils.translation import get_language

from .internal.op_sessions import SESSION_KEY, browser_entries


class OPSessionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        if session is not None and hasattr(request, "user") and SESSION_KEY in session:
            browser_entries(request)
        return self.get_response(request)


# --- bearer endpoints ------------------------------------------------------------------------------


class BearerEndpointsMiddleware:
    """Answers the endpoints a client calls with a token or its own credentials (userinfo,
    introspection, token, revocation) right away, without the middleware listed after it.

    Those requests carry a token or client credentials and no cookie: sessions, CSRF (the views
    are exempt), authentication, OP sessions, messages and django-axes have nothing to do there,
    yet cost ~80 µs of a ~0.6 ms userinfo call. Put it after every middleware that must still see
    them (security headers, ``CommonMiddleware``, ``XFrameOptionsMiddleware``, CSP) and before the
    browser ones; a request for any other path goes down the whole chain as before.

    The view is found with ``django.urls.resolve`` (once per path) and called as Django's handler
    would; a site with ``ATOMIC_REQUESTS``, or a middleware before this one that sets
    ``request.urlconf``, gets the whole chain for these paths too.
    """

    url_names = (
        "oidc_provider_ext:userinfo",
        "oidc_provider_ext:introspect",
        "oidc_provider_ext:token",
        "oidc_provider_ext:revocation",
    )

    def __init__(self, get_response):
        self.get_response = get_response
        self._paths: dict[tuple[str, str | None], dict[str, ResolverMatch]] = {}

    def _bearer_paths(self) -> dict[str, ResolverMatch]:
        # reverse() and resolve() per request cost more than what this saves: once per URLconf and
        # active language, as path_info (without the script prefix reverse() puts in front) with
        # what it resolves to (a fixed path without arguments: the same match every time). The
        # language: under i18n_patterns a path resolves only in the language active now
        # (LocaleMiddleware runs later), so only that language's paths are answered here; others
        # take the chain.
        key = (settings.ROOT_URLCONF, get_language())
        paths = self._paths.get(key)
        if paths is None:
            prefix = get_script_prefix()
            paths = {}
            for name in self.url_names:
                with suppress(NoReverseMatch, Resolver404):
                    path = "/" + reverse(name, urlconf=key[0])[len(prefix) :]
                    paths[path] = resolve(path, urlconf=key[0])
            if len(self._paths) < 64:  # bounded by the site's languages
                self._paths[key] = paths
        return paths

    def __call__(self, request):
        match = self._bearer_paths().get(request.path_info)
        if (
            match is not None
            and getattr(request, "urlconf", None) is None
            and not any(db.get("ATOMIC_REQUESTS") for db in settings.DATABASES.values())
        ):
            request.resolver_match = match
            return match.func(request, *match.args, **match.kwargs)
        return self.get_response(request)


# What a view (django-csp's decorators) sets on a response to change or drop its policy.
_PER_RESPONSE_POLICY = tuple(
    f"_csp_{part}{suffix}" for part in ("config", "update", "replace", "exempt") for suffix in ("", "_ro")
)


class CSPMiddleware(csp.middleware.CSPMiddleware):
    """django-csp's middleware; a response without a policy of its own (none of django-csp's
    decorators, no nonce taken: every page but a tenant's branded sign-in, and every JSON answer)
    gets the header django-csp writes, built once per policy setting and the parts of the request
    it depends on (whether the path is under an ``EXCLUDE_URL_PREFIXES`` prefix, the status with
    ``DEBUG``) instead of on every response (~100 µs each: the policy is deep-copied and rendered)."""

    def __init__(self, get_response):
        super().__init__(get_response)
        self._headers: dict[tuple, tuple[Any, Any, dict[str, str]]] = {}

    def process_response(self, request, response):
        if (
            getattr(request, "csp_nonce", None)
            or any(hasattr(response, name) for name in _PER_RESPONSE_POLICY)
            # django-csp's extension point: a subclass's parts may depend on the request
            or type(self).get_policy_parts is not csp.middleware.CSPMiddleware.get_policy_parts
        ):
            return super().process_response(request, response)
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        report_only = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
        excluded = tuple(
            request.path_info.startswith(tuple((setting or {}).get("EXCLUDE_URL_PREFIXES") or ()))
            for setting in (policy, report_only)
        )
        key = (excluded, response.status_code, settings.DEBUG)
        cached = self._headers.get(key)
        if cached is None or cached[0] is not policy or cached[1] is not report_only:
            # What django-csp writes on a plain response to this request: the same header values.
            plain = super().process_response(request, HttpResponse(status=response.status_code))
            names = (csp.constants.HEADER, csp.constants.HEADER_REPORT_ONLY)
            headers = {name: plain[name] for name in names if name in plain}
            cached = (policy, report_only, headers)
            if len(self._headers) < 64:
                self._headers[key] = cached
        for name, value in cached[2].items():
            if name not in response:
                response[name] = value
        if getattr(request, "_csp_nonce", None) is None:
            # As django-csp does: a nonce taken after the header was written raises, never goes unsent.
            request.csp_nonce = csp.middleware.CheckableLazyObject(self._csp_nonce_post_response)
        return response
