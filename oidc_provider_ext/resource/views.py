"""The protected-resource metadata document (RFC 9728 3) of the resources this project serves.

Served for ``RESOURCE_SERVER_IDENTIFIER`` and for every ``resource=`` a view of the URLconf names.
Imports no model.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.views.generic import View

from oidc_provider_ext.internal.requests import Problem, decorated_view, rejecting_bad_requests

from .metadata import configured_resource, find_resource, unique
from .urlconf import resources_in_urlconf

log = logging.getLogger(__name__)


def served_resources():
    """This project's resources: the one of the settings first, then those views name.

    A malformed resource setting (check E011) is left out, logged: the well-known URL answers
    404 for it, never 500, while the protected views refuse every token.
    """
    try:
        configured = configured_resource()
    except ImproperlyConfigured as exc:
        log.error("The protected-resource metadata of the settings is not served: %s", exc)
        configured = None
    return tuple(unique((configured, *resources_in_urlconf())))


def _invalid_request(request: HttpRequest, problem: Problem) -> JsonResponse:
    return JsonResponse({"error": "invalid_request", "error_description": problem.description}, status=400)


# It takes no parameters (RFC 6749 3.1: unrecognised ones are ignored); the boundary bounds the rest.
@decorated_view(login_not_required, rejecting_bad_requests(_invalid_request, reads_parameters=False))
class ProtectedResourceMetadataView(View):
    """``GET /.well-known/oauth-protected-resource[/path]``: the metadata of the resource whose
    identifier has that path (RFC 9728 3.1). Any other path, however spelt, is 404: the document
    says which identifier it describes, so a client can check it (RFC 9728 3.3)."""

    http_method_names = ["get", "head", "options"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        resource = find_resource(request.path, request.get_host, served_resources())
        if resource is None:
            response = JsonResponse({"error": "not_found"}, status=404)
        else:
            response = JsonResponse(resource.metadata())
            response["Cache-Control"] = "public, max-age=3600"
        # Public metadata, read by browser-based clients too (as the discovery document).
        response["Access-Control-Allow-Origin"] = "*"
        return response
