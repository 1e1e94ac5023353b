"""RFC 8707 resource indicators: which registered resource servers a request may name.

One rule, used at the authorization endpoint (2.1), at the token endpoint (2.2, code exchange and
refresh) and by client credentials: a ``resource`` value is accepted only if it is, byte for byte,
the identifier of an *enabled* :class:`~oidc_provider_ext.models.ResourceServer` that allows the
client (fail closed: explicitly, or "any client") and belongs to the request's tenant (or to every
tenant). Anything else, malformed values included, is ``invalid_target``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef

from oidc_provider_ext.models import ResourceServer
from oidc_provider_ext.models.resources import MAX_IDENTIFIER_LENGTH, identifier_problem

INVALID_TARGET = "invalid_target"  # RFC 8707 2
NOT_AVAILABLE = "The resource is not available to this client."


class InvalidTarget(Exception):
    """RFC 8707 2: the resource is invalid, missing, unknown, or malformed."""

    error = INVALID_TARGET

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class Audience:
    """The resource server an access token is issued for (what the token needs of it)."""

    identifier: str
    name: str
    scopes: tuple[str, ...]
    lifetime: int | None

    @classmethod
    def of(cls, server: ResourceServer) -> Audience:
        return cls(server.identifier, server.name, tuple(server.scope_list), server.access_token_lifetime)


def resolve(identifiers: list[str], application, tenant: str | None) -> list[ResourceServer]:
    """The resource servers named by ``identifiers`` (in order, without repeats), for
    ``application`` signing in to ``tenant`` (a code, "" for none; None: not decided yet, checked
    again once it is). Raises :class:`InvalidTarget`."""
    wanted = list(dict.fromkeys(identifiers))
    for value in wanted:
        # Never a query for a value that cannot be an identifier (1 MB, NUL, relative, fragment).
        if not isinstance(value, str) or len(value) > MAX_IDENTIFIER_LENGTH or identifier_problem(value):
            raise InvalidTarget(
                "The resource must be an absolute URI without a fragment (RFC 8707 section 2)."
            )
    if not wanted:
        return []
    allowed = ResourceServer.allowed_clients.through.objects.filter(
        resourceserver_id=OuterRef("pk"), application_id=application.pk
    )
    found = {
        server.identifier: server
        for server in ResourceServer.objects.filter(identifier__in=wanted, enabled=True).annotate(
            client_allowed=Exists(allowed)
        )
    }
    servers: list[ResourceServer] = []
    for value in wanted:
        server = found.get(value)
        # One answer for unknown, disabled and not allowed: a client learns nothing about APIs it
        # may not use. Fail closed: a client must be allowed explicitly, or "any client" ticked.
        # Nor whether an API exists in another organisation (the tenant may come from acr_values,
        # before sign-in). The value is never echoed (RFC 6749 error_description charset).
        if (
            server is None
            or not (server.any_client or server.client_allowed)
            or (tenant is not None and not allows_tenant(server, tenant))
        ):
            raise InvalidTarget(NOT_AVAILABLE)
        servers.append(server)
    return servers


def is_identifier_of_a_resource_server(client_id: str) -> bool:
    """Whether ``client_id`` is a resource server's identifier (enabled or not). A token requested
    without resource has aud = client_id, which that API would accept (audience confusion): such a
    client is refused wherever client ids are made (admin, oidc_createclient, registration, client
    ID metadata documents) and at the token endpoint; ResourceServer.clean refuses the other order.
    No query for a client_id that cannot be an identifier (most are not URIs)."""
    if not isinstance(client_id, str) or ":" not in client_id or len(client_id) > MAX_IDENTIFIER_LENGTH:
        return False
    if identifier_problem(client_id):
        return False
    return ResourceServer.objects.filter(identifier=client_id).exists()


CLIENT_ID_IS_A_RESOURCE = "This client_id is the identifier of a resource server; a client cannot have it."


def allows_tenant(server: ResourceServer, tenant: str) -> bool:
    tenants = server.tenants
    return not tenants or tenant.lower() in tenants
