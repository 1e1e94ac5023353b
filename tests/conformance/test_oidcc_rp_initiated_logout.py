"""The OpenID Foundation's ``oidcc-rp-initiated-logout-certification-test-plan`` (static client, code
flow), one test per test module, named after it, against ``/connect/endsession`` on the live
server. The tests after the plan's modules check rules of OIDC Core and RP-Initiated Logout 1.0 the
plan does not reach."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.live import CALLBACK, UserAgent, forms_of, query_of

from .conftest import b64url

pytestmark = pytest.mark.live


def signed_in(op, client=None, **params) -> tuple[UserAgent, dict]:
    user_agent = op.user_agent()
    _result, tokens, _claims = op.code_flow(user_agent, client, **params)
    return user_agent, tokens


def end_session(op, user_agent: UserAgent, confirm: bool = True, **params):
    """GET the end-session endpoint; on the confirmation page, press "Sign out" unless ``confirm`` is
    false. ``user_agent.pages`` is the kind of the first page shown ("logout": the confirmation), or
    empty after an immediate redirect."""
    response = user_agent.get(f"{op.meta['end_session_endpoint']}?{urlencode(params)}")
    user_agent.pages = [user_agent.page_kind(response)] if not response.is_redirect else []
    if confirm and response.status_code == 200 and user_agent.pages == ["logout"]:
        response = user_agent.submit_logout(response)
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


def assert_signed_out_page(user_agent: UserAgent, response) -> None:
    assert_not_sent_to_rp(response)
    assert response.status_code == 200 and user_agent.page_kind(response) == "signed-out", (
        "RP-Initiated Logout 1.0 §3: without a post_logout_redirect_uri the OP does not redirect "
        f'(docs/logout.md: it shows "You are signed out"), got HTTP {response.status_code}'
    )


def assert_no_confirmation(user_agent: UserAgent) -> None:
    # RP-Initiated Logout 1.0 §2: the OP SHOULD (not MUST) ask when the id_token_hint belongs to the
    # current session; docs/logout.md: a hint proving the signed-in user's own session logs out at once.
    assert "logout" not in user_agent.pages, (
        "docs/logout.md: an id_token_hint of this browser's session needs no confirmation page"
    )


def assert_confirmation(user_agent: UserAgent, page, **params) -> None:
    assert page.status_code == 200 and user_agent.page_kind(page) == "logout", (
        "RP-Initiated Logout 1.0 §2: the OP MUST ask the End-User whether to log out when there is "
        "no id_token_hint, or it does not belong to the current OP session, got HTTP "
        f"{page.status_code}"
    )
    form = next(f for f in forms_of(page.text) if ("confirm", "yes") in f.buttons)
    assert form.method == "post" and urlsplit(form.action).path == "/connect/endsession", (
        "docs/logout.md: the confirmation form posts to the end-session endpoint"
    )
    assert "csrfmiddlewaretoken" in form.fields, "docs/logout.md: the confirmation form is CSRF-protected"
    sent = {name: value for name, value in params.items() if value}
    assert {name: form.fields.get(name) for name in sent} == sent, (
        "the confirmation form carries the logout request's parameters, so confirming completes it"
    )


def test_oidcc_rp_initiated_logout(op):
    user_agent, tokens = signed_in(op)
    response = end_session(
        op, user_agent, id_token_hint=tokens["id_token"], post_logout_redirect_uri=CALLBACK, state="st8"
    )
    assert_no_confirmation(user_agent)
    assert response.status_code == 302 and response.headers["Location"].startswith(CALLBACK), (
        "RP-Initiated Logout 1.0 §3: after logout the OP redirects to the post_logout_redirect_uri"
    )
    assert query_of(response.headers["Location"]).get("state") == "st8", (
        "RP-Initiated Logout 1.0 §3: state is passed back"
    )
    assert session_ended(op, user_agent), "RP-Initiated Logout 1.0 §2: the End-User is logged out of the OP"
    assert op.userinfo(tokens["access_token"]).status_code == 401, (
        "docs/logout.md: the access token issued in the ended session is revoked"
    )


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
    assert not session_ended(op, user_agent), "a refused logout request does not log the user out"


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
    params = {"client_id": op.client.client_id, "post_logout_redirect_uri": CALLBACK, "state": "st8"}
    page = end_session(op, user_agent, confirm=False, **params)
    assert_confirmation(user_agent, page, **params)
    assert not session_ended(op, user_agent), "showing the confirmation page does not log out"
    response = end_session(op, user_agent, **params)
    assert response.status_code == 302 and response.headers["Location"].startswith(CALLBACK), (
        "RP-Initiated Logout 1.0 §3: after the confirmed logout the OP redirects to the registered "
        "post_logout_redirect_uri of the client_id"
    )
    assert query_of(response.headers["Location"]).get("state") == "st8", "§3: state is passed back"
    assert session_ended(op, user_agent), "RP-Initiated Logout 1.0 §2: the End-User is logged out"


def test_oidcc_rp_initiated_logout_no_params(op):
    user_agent, _tokens = signed_in(op)
    page = end_session(op, user_agent, confirm=False)
    assert_confirmation(user_agent, page)
    response = end_session(op, user_agent)
    assert_signed_out_page(user_agent, response)
    assert session_ended(op, user_agent), "RP-Initiated Logout 1.0 §2: the End-User is logged out"


def test_oidcc_rp_initiated_logout_no_post_logout_redirect_uri(op):
    user_agent, tokens = signed_in(op)
    response = end_session(op, user_agent, id_token_hint=tokens["id_token"])
    assert_no_confirmation(user_agent)
    assert_signed_out_page(user_agent, response)
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
    assert_signed_out_page(user_agent, response)
    assert session_ended(op, user_agent), "RP-Initiated Logout 1.0 §2: the End-User is logged out"


# --- not modules of the plan ---------------------------------------------------------------------------


def test_unknown_client_id_is_an_error_page(op):
    user_agent, _tokens = signed_in(op)
    response = end_session(op, user_agent, client_id="no-such-client", post_logout_redirect_uri=CALLBACK)
    assert_refused(response)
    assert user_agent.page_kind(response) == "error", "RP-Initiated Logout 1.0 §4: an error page at the OP"
    assert not session_ended(op, user_agent), "a refused logout request does not log the user out"


def test_logout_request_by_post(op):
    """RP-Initiated Logout 1.0 §2: "OPs MUST support the use of the HTTP GET and POST methods at the
    Logout Endpoint"; the RP's form carries no CSRF token of the OP."""
    user_agent, tokens = signed_in(op)
    response = user_agent.post(
        op.meta["end_session_endpoint"],
        {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": CALLBACK, "state": "st8"},
    )
    assert response.status_code == 302 and response.headers["Location"].startswith(CALLBACK), (
        f"RP-Initiated Logout 1.0 §2-3: a POSTed logout request is processed like a GET one, got HTTP "
        f"{response.status_code}"
    )
    assert query_of(response.headers["Location"]).get("state") == "st8", "§3: state is passed back"
    assert session_ended(op, user_agent), "RP-Initiated Logout 1.0 §2: the End-User is logged out"


def test_id_token_hint_of_another_session_asks_and_ends_only_this_one(op):
    """RP-Initiated Logout 1.0 §2: the OP MUST ask when the ID token "does not belong to the current OP
    session"; OIDC Core 11 and docs/logout.md: the user's other sessions and their tokens survive."""
    laptop, laptop_tokens = signed_in(op)
    phone, phone_tokens = signed_in(op)
    params = {"id_token_hint": laptop_tokens["id_token"], "post_logout_redirect_uri": CALLBACK}
    page = end_session(op, phone, confirm=False, **params)
    assert_confirmation(phone, page, **params)
    response = end_session(op, phone, **params)
    assert response.status_code == 302 and response.headers["Location"] == CALLBACK, "§3: redirected"
    assert session_ended(op, phone), "RP-Initiated Logout 1.0 §2: this browser is logged out"
    assert op.userinfo(phone_tokens["access_token"]).status_code == 401, (
        "docs/logout.md: the tokens issued in the ended session are revoked"
    )
    assert not session_ended(op, laptop), "docs/logout.md: the user's other session is not ended"
    assert op.userinfo(laptop_tokens["access_token"]).status_code == 200, (
        "docs/logout.md: tokens issued in the user's other sessions are not touched"
    )


def test_offline_access_of_another_client_survives_logout(op):
    user_agent = op.user_agent()
    _result, offline, _claims = op.code_flow(user_agent, op.client2, scope="openid offline_access")
    _result, tokens, _claims = op.code_flow(user_agent)
    response = end_session(
        op, user_agent, id_token_hint=tokens["id_token"], post_logout_redirect_uri=CALLBACK
    )
    assert response.status_code == 302, "the logout itself succeeds"
    assert op.userinfo(tokens["access_token"]).status_code == 401, (
        "docs/logout.md: the tokens issued in the ended session are revoked"
    )
    refreshed = op.token_request(
        {"grant_type": "refresh_token", "refresh_token": offline["refresh_token"]}, op.client2
    )
    assert refreshed.status_code == 200, (
        "OIDC Core 11: an offline_access refresh token obtains tokens when the End-User is not logged in; "
        f"after logging out of another client it got {refreshed.status_code} {refreshed.text[:200]}"
    )


class _BackchannelReceiver(BaseHTTPRequestHandler):
    """The RP's back-channel logout URI: records each POST and answers 200 (Back-Channel Logout 1.0
    §2.8)."""

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.server.received.append({"content_type": self.headers.get("Content-Type", ""), "body": body})
        self.send_response(200)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def backchannel_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BackchannelReceiver)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_backchannel_logout_token(op, backchannel_receiver):
    """What discovery's backchannel_logout_supported / backchannel_logout_session_supported promise:
    the client's back-channel logout URI receives a logout token when the session ends (OpenID
    Connect Back-Channel Logout 1.0 §2.5-2.6), checked as the RP must (§2.6)."""
    from oidc_provider_ext.models import ClientProfile

    uri = f"http://127.0.0.1:{backchannel_receiver.server_port}/backchannel"
    # The client's registration metadata (Back-Channel Logout 1.0 §2.2), as the suite's client has it.
    ClientProfile.objects.filter(application__client_id=op.client.client_id).update(
        backchannel_logout_uri=uri, backchannel_logout_session_required=True
    )
    user_agent, tokens = signed_in(op)
    _header, id_claims = op.verify_signature(tokens["id_token"])
    response = end_session(
        op, user_agent, id_token_hint=tokens["id_token"], post_logout_redirect_uri=CALLBACK
    )
    assert response.status_code == 302, "the logout itself succeeds"
    # Deliveries are sent after the logout commits, by the live server's back-channel worker pool
    # (this process): wait for it rather than for a fixed time.
    from oidc_provider_ext.internal import backchannel

    backchannel.flush()

    assert len(backchannel_receiver.received) == 1, (
        "Back-Channel Logout 1.0 §2.5: the OP sends one logout request to the RP of the ended session"
    )
    request = backchannel_receiver.received[0]
    assert request["content_type"].startswith("application/x-www-form-urlencoded"), (
        "Back-Channel Logout 1.0 §2.5: the logout token is POSTed form-encoded"
    )
    logout_token = parse_qs(request["body"])["logout_token"][0]
    header, claims = op.verify_signature(logout_token)  # §2.6 item 3: signed like ID tokens
    assert header.get("typ") == "logout+jwt", "Back-Channel Logout 1.0 §2.4: typ logout+jwt"
    assert claims["iss"] == op.issuer, "Back-Channel Logout 1.0 §2.6 item 4: iss"
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert op.client.client_id in audiences, "Back-Channel Logout 1.0 §2.6 item 4: aud"
    assert isinstance(claims.get("iat"), int) and claims.get("jti"), "§2.4: iat and jti are REQUIRED"
    assert "http://schemas.openid.net/event/backchannel-logout" in claims.get("events", {}), (
        "Back-Channel Logout 1.0 §2.4: events holds the back-channel logout event"
    )
    assert "nonce" not in claims, "Back-Channel Logout 1.0 §2.4: a logout token MUST NOT contain nonce"
    assert claims.get("sub") == id_claims["sub"], "Back-Channel Logout 1.0 §2.4: the End-User's sub"
    assert claims.get("sid") == id_claims["sid"], (
        "Back-Channel Logout 1.0 §2.4 / §2.1 backchannel_logout_session_supported: the session's sid, "
        "the one in the ID token"
    )
