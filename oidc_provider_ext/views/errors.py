"""HTML error pages at the IdP: shown when the client cannot safely be redirected to."""

from django.shortcuts import render
from django.utils.translation import gettext as _

ERROR_TEMPLATE = "oidc_provider_ext/error.html"


def bad_request_page(request, description: str):
    return error_page(request, _("This request is not valid"), description, error="invalid_request")


def boundary_page(request, problem):
    """The request boundary's answer on a page that has no client to redirect to."""
    return bad_request_page(request, problem.description)


def error_page(request, title: str, message: str, status: int = 400, **context):
    """An error the *user* sees: what went wrong and what to do next."""
    context.update(title=title, message=message, status=status)
    response = render(request, ERROR_TEMPLATE, context, status=status)
    response["Cache-Control"] = "no-store"
    return response
