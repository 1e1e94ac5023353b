"""Review round 4 (attacker): findings in the performance changes since 8bf9d50."""

import pytest
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import connection, models
from django.test.utils import isolate_apps
from django.utils import timezone

from oidc_provider_ext.internal import lookups


@pytest.mark.django_db(transaction=True)
@isolate_apps("oidc_provider_ext")
def test_delete_by_key_cascades_to_a_hidden_reverse_relation():
    """A site's row that refers to the session row with ``related_name="+"`` (a hidden reverse
    relation: ``_meta.get_fields()`` leaves it out, Django's collector does not) must be cascaded
    as ``Model.delete()`` does, not left to fail the session DELETE (sign-in/sign-out: 500)."""

    class ReviewSession(AbstractBaseSession):
        class Meta:
            app_label = "oidc_provider_ext"
            db_table = "review4_session"

    class ReviewSessionNote(models.Model):
        session = models.ForeignKey(ReviewSession, on_delete=models.CASCADE, related_name="+")

        class Meta:
            app_label = "oidc_provider_ext"
            db_table = "review4_session_note"

        def __str__(self):
            return self.session_id

    with connection.schema_editor() as editor:
        editor.create_model(ReviewSession)
        editor.create_model(ReviewSessionNote)
    try:
        key = "k" * 32
        ReviewSession.objects.create(session_key=key, session_data="", expire_date=timezone.now())
        ReviewSessionNote.objects.create(session_id=key)
        lookups.delete_by_key(ReviewSession, key, using="default")  # as ReviewSession(pk=key).delete()
        assert not ReviewSession.objects.exists()
        assert not ReviewSessionNote.objects.exists()
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(ReviewSessionNote)
            editor.delete_model(ReviewSession)


SPA = "https://spa.example"


def _every_header(response) -> dict[str, str]:
    headers = {name.lower(): value for name, value in response.items()}
    csp = headers.pop("content-security-policy", None)
    if csp is not None:  # django-csp does not keep the directives' order
        headers["content-security-policy"] = sorted(d.strip() for d in csp.split(";") if d.strip())
    # The whole chain adds "Cookie" (its middleware read the session); these answers do not depend
    # on a cookie, so leaving it out is right, not a difference.
    vary = [v.strip() for v in headers.pop("vary", "").split(",") if v.strip() and v.strip() != "Cookie"]
    if vary:
        headers["vary"] = vary
    return headers


def _client_errors_and_preflights(confidential_app):
    from django.test import Client
    from django.urls import reverse

    from .flow import basic_auth, token_request

    client = Client()
    token = reverse("oidc_provider_ext:token")
    revocation = reverse("oidc_provider_ext:revocation")
    cors = {"HTTP_ORIGIN": SPA}
    preflight = {**cors, "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST"}
    wrong = (confidential_app.client_id, "wrong secret")
    code = {"grant_type": "authorization_code", "code": "x", "redirect_uri": "https://rp.example/cb"}
    return [
        client.options(token, **preflight),
        client.options(revocation, **preflight),
        token_request(client, code, auth=wrong, **cors),  # 401 invalid_client, WWW-Authenticate
        token_request(client, code, **cors),  # no client at all
        client.get(token, **cors),  # 405
        client.post(token, "{}", content_type="application/json", **cors),  # not a form
        client.post(
            revocation,
            "token=x",
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=basic_auth(*wrong),
            **cors,
        ),
    ]


@pytest.mark.django_db
def test_token_and_revocation_errors_and_preflights_have_every_header_of_the_whole_chain(
    confidential_app, settings
):
    from .factories import PublicApplicationFactory

    PublicApplicationFactory(allowed_origins=SPA)
    fast = _client_errors_and_preflights(confidential_app)
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("BearerEndpointsMiddleware")]
    whole_chain = _client_errors_and_preflights(confidential_app)
    for quick, slow in zip(fast, whole_chain, strict=True):
        assert (quick.status_code, _every_header(quick), quick.content) == (
            slow.status_code,
            _every_header(slow),
            slow.content,
        ), quick.wsgi_request.path
