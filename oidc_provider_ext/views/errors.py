"""HTML error pages at the IdP: shown when the client cannot safely be redirected to."""

from django.shortcuts import render
from django.utils.translation import gettext as _

ERROR_TEMPLATE = "oidc_provider_ext/error.html"


def bad_request_page(request, description: str):
    # The description is the protocol's (RFC 6749 error_description, English, for developers); the
    # user reads what happened in the page's language, the description below it.
    return error_page(
        request,
        _("This request is not valid"),
        _("The link or form that brought you here cannot be used. Go back to the application and try again."),
        error="invalid_request",
        error_description=description,
    )


def boundary_page(request, problem):
    """The request boundary's answer on a page that has no client to redirect to."""
    return bad_request_page(request, problem.description)


def error_page(request, title: str, message: str, status: int = 400, **context):
    """An error the *user* sees: what went wrong and what to do next."""
    context.update(title=title, message=message, status=status)
    response = render(request, ERROR_TEMPLATE, context, status=status)
    response["Cache-Control"] = "no-store"
    return response
