"""What a resource server is (its RFC 9728 identity) and the metadata document that describes it.

A :class:`ProtectedResource` names one API: its resource identifier (the ``resource`` of RFC 9728
section 2, the value an RFC 8707 client sends and the ``aud`` its access tokens carry), the scopes
it is used with and its display name. The Django decorator, the DRF classes and the ASGI wrapper
take one (``resource=``); without it they use :func:`configured_resource`, built from settings.

Importing this module imports no model (an API project may not install the provider app).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from oidc_provider_ext.conf import (
    SETTINGS_NAME,
    app_settings,
    resource_audiences,
    resource_identifier,
    scope_names,
)

__all__ = ["WELL_KNOWN_PATH", "ProtectedResource", "configured_resource", "find_resource"]

# RFC 9728 3 / 8.1: the well-known URI suffix registered for protected-resource metadata.
WELL_KNOWN_PATH = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True)
class ProtectedResource:
    """One resource server: its identifier and what its metadata document says about it.

    ``identifier`` is an https URL (http only on loopback) compared byte for byte with a token's
    ``aud`` and published unchanged. ``audiences`` are further ``aud`` values accepted (the
    ``client_id`` of clients that ask for tokens without an RFC 8707 ``resource``); they are never
    published. ``scopes_supported`` and ``name`` fill the optional metadata fields.
    """

    identifier: str
    scopes_supported: tuple[str, ...] | None = None
    name: str | None = None
    audiences: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        where = f"ProtectedResource({self.identifier!r})"
        resource_identifier(self.identifier, where)
        if self.scopes_supported is not None:
            scopes = scope_names(self.scopes_supported, f"{where}.scopes_supported")
            object.__setattr__(self, "scopes_supported", scopes)
        if self.audiences:
            audiences = resource_audiences(self.audiences, f"{where}.audiences")
            object.__setattr__(self, "audiences", audiences)

    @property
    def accepted_audiences(self) -> tuple[str, ...]:
        """The ``aud`` values a token for this resource may carry: the identifier first."""
        return tuple(dict.fromkeys((self.identifier, *self.audiences)))

    @property
    def metadata_path(self) -> str:
        """The path of the metadata URL (RFC 9728 3.1: the well-known suffix goes between the host
        and the identifier's path, whose terminating slash after the host is dropped)."""
        path = urlsplit(self.identifier).path
        return WELL_KNOWN_PATH + ("" if path == "/" else path)

    @property
    def metadata_url(self) -> str:
        """The URL of this resource's metadata document (RFC 9728 3.1), for ``resource_metadata``."""
        parts = urlsplit(self.identifier)
        return f"{parts.scheme}://{parts.netloc}{self.metadata_path}"

    def metadata(self) -> dict[str, Any]:
        """The RFC 9728 section 2 document. ``authorization_servers`` is the issuer exactly as the
        provider's discovery document states it (RFC 8414 3.3: compared as a string)."""
        document: dict[str, Any] = {
            "resource": self.identifier,
            "authorization_servers": [app_settings.RESOURCE_SERVER_ISSUER],
            # RFC 6750 2.1 only: the query (5.3, RFC 9700 4.3.2) is refused and a form body not read.
            "bearer_methods_supported": ["header"],
        }
        if self.scopes_supported is not None:
            document["scopes_supported"] = list(self.scopes_supported)
        if self.name is not None:
            document["resource_name"] = self.name
        return document

    def serves_path(self, path: str) -> bool:
        """Whether ``path`` (percent-decoded, as Django and ASGI give it) is this metadata path."""
        return path == unquote(self.metadata_path)


def as_resource(value: ProtectedResource | str, where: str) -> ProtectedResource:
    """``value`` as a :class:`ProtectedResource` (a string is its identifier)."""
    if isinstance(value, ProtectedResource):
        return value
    if isinstance(value, str):
        return ProtectedResource(resource_identifier(value, where))
    raise TypeError(f"{where} must be a ProtectedResource or an identifier string, not {value!r}.")


def configured_resource() -> ProtectedResource | None:
    """This project's resource from settings (``RESOURCE_SERVER_IDENTIFIER`` and the metadata
    settings, ``RESOURCE_SERVER_AUDIENCE`` as further audiences), or None without an identifier."""
    identifier = app_settings.RESOURCE_SERVER_IDENTIFIER
    if identifier is None:
        return None
    return ProtectedResource(
        identifier,
        scopes_supported=app_settings.RESOURCE_SERVER_SCOPES_SUPPORTED,
        name=app_settings.RESOURCE_SERVER_NAME,
        audiences=app_settings.RESOURCE_SERVER_AUDIENCE or (),
    )


def find_resource(
    path: str, host: Callable[[], str | None], resources: Iterable[ProtectedResource]
) -> ProtectedResource | None:
    """The resource whose metadata path is ``path``; among several (identifiers on other hosts
    with one path) the one on ``host()``. None when no identifier matches: the caller answers 404."""
    matching = [resource for resource in resources if resource.serves_path(path)]
    if len(matching) > 1:
        netloc = host()
        matching = [resource for resource in matching if urlsplit(resource.identifier).netloc == netloc]
    return matching[0] if len(matching) == 1 else None


def unique(resources: Iterable[ProtectedResource | None]) -> Iterator[ProtectedResource]:
    """``resources`` without None and with one entry per identifier (the first wins)."""
    seen: set[str] = set()
    for resource in resources:
        if resource is not None and resource.identifier not in seen:
            seen.add(resource.identifier)
            yield resource


MISSING_IDENTITY = (
    f"Set {SETTINGS_NAME}['RESOURCE_SERVER_IDENTIFIER'] to this API's resource identifier (the https "
    "URL its tokens carry in aud), or pass resource= to the view, DRF class or ASGI wrapper."
)
