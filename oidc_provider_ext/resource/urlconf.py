"""The views of the URLconf that the resource-server helper protects, and the resources they name.

System check E011 reads the audiences; the metadata view (RFC 9728 3) the resources. Imports no model.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from django.urls import URLResolver, get_resolver

from .metadata import ProtectedResource

AUDIENCE_MARK = "oidc_provider_ext_audience"
RESOURCE_MARK = "oidc_provider_ext_resource"

_NOT_PROTECTED = object()


def protected_views(
    resolver: URLResolver | None = None,
) -> Iterator[tuple[str, tuple[str, ...] | None, ProtectedResource | None]]:
    """(route, audiences or None, resource or None) of every view the helper protects.

    Audiences None: the view relies on the settings. A broken URLconf yields nothing (Django's
    own URL checks report it).
    """
    try:
        patterns = (resolver or get_resolver()).url_patterns
    except Exception:
        return

    def walk(patterns: Any, prefix: str) -> Iterator[tuple[str, Any, Any]]:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
                continue
            for candidate in _candidates(pattern.callback):
                audiences = getattr(candidate, AUDIENCE_MARK, _NOT_PROTECTED)
                if audiences is not _NOT_PROTECTED:
                    yield route, audiences, getattr(candidate, RESOURCE_MARK, None)

    yield from walk(patterns, "")


def _candidates(view: Any) -> list[Any]:
    # A decorated function view; a class-based view decorated on dispatch or a handler
    # (method_decorator copies the mark); a DRF view (as_view() sets .cls) and its authenticators.
    candidates = [view]
    view_class = getattr(view, "view_class", None) or getattr(view, "cls", None)
    if isinstance(view_class, type):
        names = ("dispatch", *getattr(view_class, "http_method_names", ()))
        candidates += [getattr(view_class, name, None) for name in names]
        candidates += list(getattr(view_class, "authentication_classes", None) or ())
    return candidates


@lru_cache(maxsize=16)
def _resources_of(resolver: URLResolver) -> tuple[ProtectedResource, ...]:
    found = (resource for _, _, resource in protected_views(resolver))
    return tuple({resource.identifier: resource for resource in found if resource is not None}.values())


def resources_in_urlconf() -> tuple[ProtectedResource, ...]:
    """The resources named by ``resource=`` on the views of the current URLconf (walked once per
    URLconf: it does not change while the process runs)."""
    return _resources_of(get_resolver())
