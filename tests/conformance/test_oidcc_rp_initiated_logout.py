"""The OpenID Foundation's ``oidcc-rp-initiated-logout-certification-test-plan`` (static client, code
flow), one test per test module, named after it, against ``/connect/endsession`` on the live
server. The last two tests are not modules of the plan: they check rules of OIDC Core and
RP-Initiated Logout 1.0 the plan does not reach."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest

from tests.live import CALLBACK, UserAgent, forms_of, query_of

from .conftest import b64url

pytestmark = pytest.mark.live


def signed_in(op, client=None, **params) -> tuple[UserAgent, dict]:
    user_agent = op.user_agent()
    _result, tokens, _claims = op.code_flow(user_agent, client, **params)
    return user_agent, tokens


def end_session(op, user_agent: UserAgent, confirm: bool = True, **params):
    """GET the end-session endpoint; on the confirmation page, press "Sign out"."""
    response = user_agent.get(f"{op.meta['end_session_endpoint']}?{urlencode(params)}")
    if confirm and response.status_code == 200 and user_agent.page_kind(response) == "logout":
        form = next(f for f in forms_of(response.text) if ("allow", "true") in f.buttons)
        response = user_agent.post(response.url, {**form.fields, "allow": "true"})
    return response


def session_ended(op, user_agent: UserAgent) -> bool:
    result = op.authorize(user_agent, prompt="none")
    return result.query.get("error") == "login_required"


def assert_not_sent_to_rp(response) -> None:
    location = response.headers.get("Location", "")
    assert not location.startswith(CALLBACK), (
        f"RP-Initiated Logout 1.0 §3: the OP MUST NOT redirect to the RP here, went to {location}"
    )


def assert_refused(response) -> None:
    assert_not_sent_to_rp(response)
    assert response.status_code == 400, (
        f"RP-Initiated Logout 1.0 §4: an invalid logout request is an error shown at the OP, got "
        f"HTTP {response.status_code}"
    )


def test_oidcc_rp_initiated_logout_discovery_endpoint_verification(op):
    endpoint = op.meta.get("end_session_endpoint")
    assert endpoint, "RP-Initiated Logout 1.0 §2.1: end_session_endpoint is in the discovery document"
    assert urlsplit(endpoint)[:2] == urlsplit(op.issuer)[:2], "the endpoint is served by the issuer"


def test_oidcc_rp_initiated_logout(op):
    user_agent, tokens = signed_in(op)
    response = end_session(
        op, user_agent, id_token_hint=tokens["id_token"], post_logout_redirect_uri=CALLBACK, state="st8"
    )
    assert response.status_code == 302 and response.headers["Location"].startswith(CALLBACK), (
        "RP-Initiated Logout 1.0 §3: after logout the OP redirects to the post_logout_redirect_uri"
    )
    assert query_of(response.headers["Location"]).get("state") == "st8", (
        "RP-Initiated Logout 1.0 §3: state is passed back"
    )
    assert session_ended(op, user_agent), "RP-Initiated Logout 1.0 §2: the End-User is logged out of the OP"


def test_oidcc_rp_initiated_logout_bad_post_logout_redirect_uri(op):
    user_agent, tokens = signed_in(op)
    response = end_session(
        op,
        user_agent,
        id_token_hint=tokens["id_token"],
        post_logout_redirect_uri="https://attacker.example/logout",
        state="st8",
    )
    assert_refused(response)


def test_oidcc_rp_initiated_logout_query_added_to_post_logout_redirect_uri(op):
    user_agent, tokens = signed_in(op)
    response = end_session(
        op, user_agent, id_token_hint=tokens["id_token"], post_logout_redirect_uri=CALLBACK + "?extra=1"
    )
    # RP-Initiated Logout 1.0 §3: exact match with a registered value (RFC 3986 6.2.1 simple comparison).
    assert_refused(response)


def test_oidcc_rp_initiated_logout_modified_id_token_hint(op):
    user_agent, tokens = signed_in(op)
    header, payload, signature = tokens["id_token"].split(".")
    tampered = f"{header}.{payload}.{b64url(b'not the signature' * 8)}"
    response = end_session(op, user_agent, id_token_hint=tampered, post_logout_redirect_uri=CALLBACK)
    # RP-Initiated Logout 1.0 §4: the OP validates the id_token_hint; a bad signature is an error.
    assert_refused(response)
    assert not session_ended(op, user_agent), "a refused logout request does not log the user out"


def test_oidcc_rp_initiated_logout_bad_id_token_hint(op):
    user_agent, _tokens = signed_in(op)
    response = end_session(op, user_agent, id_token_hint="not-a-jwt", post_logout_redirect_uri=CALLBACK)
    assert_refused(response)


def test_oidcc_rp_initiated_logout_no_id_token_hint(op):
    user_agent, _tokens = signed_in(op)
    page = end_session(
        op, user_agent, confirm=False, client_id=op.client.client_id, post_logout_redirect_uri=CALLBACK
    )
    assert page.status_code == 200 and user_agent.page_kind(page) == "logout", (
        "RP-Initiated Logout 1.0 §2: without id_token_hint the OP MUST ask the End-User to confirm"
    )
    response = end_session(
        op, user_agent, client_id=op.client.client_id, post_logout_redirect_uri=CALLBACK, state="st8"
    )
    if response.headers.get("Location", "").startswith(CALLBACK):
        assert query_of(response.headers["Location"]).get("state") == "st8", "§3: state is passed back"
    assert session_ended(op, user_agent), "RP-Initiated Logout 1.0 §2: the End-User is logged out"


def test_oidcc_rp_initiated_logout_no_params(op):
    user_agent, _tokens = signed_in(op)
    page = end_session(op, user_agent, confirm=False)
    assert page.status_code == 200 and user_agent.page_kind(page) == "logout", (
        "RP-Initiated Logout 1.0 §2: a logout request with no parameters asks the End-User to confirm"
    )
    response = end_session(op, user_agent)
    assert_not_sent_to_rp(response)
    assert session_ended(op, user_agent), "RP-Initiated Logout 1.0 §2: the End-User is logged out"


def test_oidcc_rp_initiated_logout_no_post_logout_redirect_uri(op):
    user_agent, tokens = signed_in(op)
    response = end_session(op, user_agent, id_token_hint=tokens["id_token"])
    assert_not_sent_to_rp(response)
    assert session_ended(op, user_agent), "RP-Initiated Logout 1.0 §2: the End-User is logged out"


def test_oidcc_rp_initiated_logout_no_state(op):
    user_agent, tokens = signed_in(op)
    response = end_session(
        op, user_agent, id_token_hint=tokens["id_token"], post_logout_redirect_uri=CALLBACK
    )
    assert response.status_code == 302 and response.headers["Location"] == CALLBACK, (
        "RP-Initiated Logout 1.0 §3: without state the redirect is to the registered URI as is"
    )


def test_oidcc_rp_initiated_logout_only_state(op):
    user_agent, tokens = signed_in(op)
    response = end_session(op, user_agent, id_token_hint=tokens["id_token"], state="st8")
    assert_not_sent_to_rp(response)
    assert session_ended(op, user_agent), "RP-Initiated Logout 1.0 §2: the End-User is logged out"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "provider bug: GET /connect/endsession?client_id=<unknown> answers HTTP 500 "
        "(Application.DoesNotExist from DOT's get_request_application); an invalid request must be an "
        "error page (RP-Initiated Logout 1.0 §4)"
    ),
)
def test_unknown_client_id_is_an_error_page(op):
    user_agent, _tokens = signed_in(op)
    response = end_session(op, user_agent, client_id="no-such-client", post_logout_redirect_uri=CALLBACK)
    assert_refused(response)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "provider bug: RP-initiated logout through one client revokes every access and refresh token "
        "of the user at every client (DOT's OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS, left on), so an "
        "offline_access refresh token of another client dies; OIDC Core 11: offline access works "
        "when the End-User is not logged in"
    ),
)
def test_offline_access_of_another_client_survives_logout(op):
    user_agent = op.user_agent()
    _result, offline, _claims = op.code_flow(user_agent, op.client2, scope="openid offline_access")
    _result, tokens, _claims = op.code_flow(user_agent)
    response = end_session(
        op, user_agent, id_token_hint=tokens["id_token"], post_logout_redirect_uri=CALLBACK
    )
    assert response.status_code == 302, "the logout itself succeeds"
    refreshed = op.token_request(
        {"grant_type": "refresh_token", "refresh_token": offline["refresh_token"]}, op.client2
    )
    assert refreshed.status_code == 200, (
        "OIDC Core 11: an offline_access refresh token obtains tokens when the End-User is not logged in; "
        f"after logging out of another client it got {refreshed.status_code} {refreshed.text[:200]}"
    )
