"""The language of the hosted pages: the one place it is chosen. Private.

Order (docs/pages.md, "Languages"): the client's ``ui_locales`` (OIDC Core 3.1.2.1), then the browser's
``Accept-Language`` (RFC 9110 12.5.4), then the site default (``LANGUAGE_CODE``); only languages
listed in ``UI_LOCALES`` are chosen from the first two.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils import translation
from django.utils.cache import patch_vary_headers

from oidc_provider_ext.conf import app_settings

MAX_ACCEPT_LANGUAGE_ENTRIES = 32


def _offered(tag: str, available: set[str]) -> str | None:
    tag = tag.strip().lower().replace("_", "-")
    for candidate in (tag, tag.split("-")[0]):
        if candidate and candidate in available:
            return candidate
    return None


def _accept_language(header: str) -> list[str]:
    """The header's language ranges, most preferred first (RFC 9110 12.4.2 quality values)."""
    ranked = []
    for position, item in enumerate(header.split(",")[:MAX_ACCEPT_LANGUAGE_ENTRIES]):
        tag, *params = item.split(";")
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        tag = tag.strip()
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, position, tag))
    return [tag for _quality, _position, tag in sorted(ranked)]


def ui_language(request: HttpRequest | None, ui_locales: str = "") -> str:
    """The language a hosted page is shown in."""
    available = set(app_settings.UI_LOCALES)
    for tag in ui_locales.split():
        if found := _offered(tag, available):
            return found
    if request is not None:
        for tag in _accept_language(request.headers.get("Accept-Language", "")):
            if found := _offered(tag, available):
                return found
    return settings.LANGUAGE_CODE


def in_ui_language(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """View decorator for every hosted page: renders the response in :func:`ui_language` of the
    request (its ``ui_locales`` query parameter, if any). Views that know a pending authorization
    request override it with that request's ``ui_locales``."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        ui_locales = request.GET.get("ui_locales", "")
        with translation.override(ui_language(request, ui_locales if isinstance(ui_locales, str) else "")):
            response = view(request, *args, **kwargs)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()  # a TemplateResponse: rendered inside the override
        # The page depends on the header: shared caches must not serve one language to all.
        patch_vary_headers(response, ("Accept-Language",))
        return response

    return wrapped
