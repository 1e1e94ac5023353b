"""Issue 14 item 8: the example project's demo relying party (idp_project/demo_rp.py) at its own
``/demo-rp/``, the demo clients' default redirect URI, against the IdP on a live server (the RP
talks HTTP to it). The browser version is tests/e2e/test_demo_rp.py."""

from __future__ import annotations

import json
import os
import stat
from io import StringIO
from urllib.parse import urljoin, urlsplit

import pytest
from django.conf import settings
from django.core.management import call_command

from idp_project import demo_rp
from oidc_provider_ext.management.commands.oidc_demo import Command as AppDemoCommand
from tests.live import UserAgent, query_of

pytestmark = pytest.mark.live


def oidc_demo() -> dict:
    out = StringIO()
    call_command("oidc_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def demo(live_issuer) -> dict:
    return oidc_demo()


def run_flow(agent: UserAgent, *, decision: str = "allow"):
    """From the playground's sign-in button to the page the callback redirects to."""
    response = agent.get("/demo-rp/start")
    for _ in range(12):
        if response.is_redirect:
            response = agent.get(urljoin(response.url, response.headers["Location"]))
            continue
        page = agent.page_kind(response)
        agent.pages.append(page)
        if page == "login":
            response = agent.submit_login(response)
        elif page == "consent":
            response = agent.submit_consent(response, decision)
        else:
            return response
    raise AssertionError("too many redirects")


def test_oidc_demo_registers_the_playground_and_writes_its_credentials(demo, live_issuer):
    from oauth2_provider.models import Application

    client = Application.objects.get(client_id=demo["confidential"]["client_id"])
    assert client.redirect_uris.split() == [
        f"{live_issuer}/demo-rp/callback",
        f"{live_issuer}/demo-rp/logged-out",
    ]
    assert f"{live_issuer}/demo-rp/logged-out" in client.post_logout_redirect_uris.split()
    file = settings.DEMO_RP["CREDENTIALS_FILE"]
    assert json.loads(file.read_text())["client_secret"] == demo["confidential"]["client_secret"]
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, "a client secret: readable by its owner only"
    assert demo_rp.credentials().client_secret == demo["confidential"]["client_secret"]


def test_the_reusable_apps_command_keeps_its_loopback_default():
    # A site without the example's playground: the app's oidc_demo still points at an RP of its own.
    assert AppDemoCommand().default_redirect_uris() == ["http://127.0.0.1:8765/callback"]


def test_playground_flow_tokens_refresh_and_logout(demo, live_issuer):
    agent = UserAgent(live_issuer, demo["user"]["username"], demo["user"]["password"])
    home = run_flow(agent)
    assert agent.pages == ["login", "consent", "other"]
    assert home.url == f"{live_issuer}/demo-rp/" and home.status_code == 200
    text = home.text
    assert 'id="id-token-verified"' in text and 'id="access-token-verified"' in text, (
        "OIDC Core 3.1.3.7 item 6: both signatures verified against the JWKS"
    )
    assert "nonce matched" in text
    assert "Dana Demo" in text and "Los Angeles" in text and "+1 (425) 555-1212" in text, (
        "userinfo shows every scope's claims (address and phone from the demo profile)"
    )
    assert "at+jwt" in text, "RFC 9068: the access token's header is shown"
    # The RP's state is its own cookie, not the IdP's session.
    assert agent.http.cookies.get(demo_rp.COOKIE, path=demo_rp.COOKIE_PATH)

    token_before = _access_token(text)
    csrf = agent.http.cookies.get("csrftoken")
    refreshed = agent.post("/demo-rp/refresh", {"csrfmiddlewaretoken": csrf})
    assert refreshed.status_code == 302
    page = agent.get("/demo-rp/")
    assert 'id="refresh-count">1<' in page.text and "Refreshed" in page.text
    assert _access_token(page.text) != token_before, "RFC 6749 6: a new access token"

    logout = agent.post("/demo-rp/logout", {"csrfmiddlewaretoken": csrf})
    location = logout.headers["Location"]
    assert location.startswith(f"{live_issuer}/connect/endsession?")
    query = query_of(location)
    assert query["post_logout_redirect_uri"] == f"{live_issuer}/demo-rp/logged-out" and query["id_token_hint"]
    response = agent.get(location)
    while response.is_redirect:
        response = agent.get(urljoin(response.url, response.headers["Location"]))
    if agent.page_kind(response) == "logout":
        response = agent.submit_logout(response)
        while response.is_redirect:
            response = agent.get(urljoin(response.url, response.headers["Location"]))
    assert urlsplit(response.url).path == "/demo-rp/"
    assert "Signed out at the IdP" in response.text and 'id="sign-in"' in response.text
    # And the IdP session is over: the next flow asks for the password again.
    run_flow(agent)
    assert agent.pages[0] == "login"


def _access_token(html: str) -> str:
    start = html.index('id="access-token"')
    encoded = html.index("Encoded</summary>", start)
    pre = html.index(">", html.index("<pre", encoded)) + 1
    return html[pre : html.index("</pre>", pre)]


def test_a_code_without_the_playgrounds_state_is_not_redeemed(demo, live_issuer):
    """RFC 6749 10.12: the callback redeems only codes of flows it started (its state). The code of
    the URL oidc_demo prints is shown with the curl to redeem it and its lifetime, and still works."""
    agent = UserAgent(live_issuer, demo["user"]["username"], demo["user"]["password"])
    callback = demo["confidential"]["redirect_uri"]
    url = (
        f"{live_issuer}/connect/authorize?response_type=code&client_id={demo['confidential']['client_id']}"
        f"&redirect_uri={callback}&scope=openid&state=xyz&nonce=n-0S6"
    )
    response = agent.get(url)
    # The callback is on the issuer, so UserAgent.follow() would walk into it: stop at its URL.
    while not (response.is_redirect and response.headers["Location"].startswith(callback)):
        if response.is_redirect:
            response = agent.get(urljoin(response.url, response.headers["Location"]))
        elif agent.page_kind(response) == "login":  # the client's tenant asks for its sign-in
            response = agent.submit_login(response)
        else:
            assert agent.page_kind(response) == "consent"
            response = agent.submit_consent(response)
    location = response.headers["Location"]
    code = query_of(location)["code"]
    page = agent.get(location)
    assert page.status_code == 400 and f'id="code">{code}<' in page.text
    assert f"within {settings.OIDC_PROVIDER_EXT.get('CODE_EXPIRE_SECONDS', 60)} seconds" in page.text
    assert "curl -u demo-confidential:" in page.text and demo["confidential"]["client_secret"] in page.text
    # Not redeemed by the RP: the printed curl still works.
    token = agent.http.post(
        f"{live_issuer}/connect/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": callback},
        auth=(demo["confidential"]["client_id"], demo["confidential"]["client_secret"]),
        timeout=10,
    )
    assert token.status_code == 200, token.text


def test_a_forged_iss_is_not_redeemed(demo, live_issuer):
    """RFC 9207 2.4: a response whose iss is not the issuer the request went to is refused (mix-up)."""
    agent = UserAgent(live_issuer, demo["user"]["username"], demo["user"]["password"])
    response = agent.get("/demo-rp/start")
    state = query_of(response.headers["Location"])["state"]
    page = agent.get(f"/demo-rp/callback?code=abc&state={state}&iss=https://evil.example")
    assert page.headers["Location"] == "/demo-rp/"
    home = agent.get("/demo-rp/")
    assert "RFC 9207" in home.text and 'id="sign-in"' in home.text


def test_a_tampered_token_is_not_verified(demo, live_issuer):
    agent = UserAgent(live_issuer, demo["user"]["username"], demo["user"]["password"])
    run_flow(agent)
    jwks = agent.http.get(f"{live_issuer}/connect/jwks", timeout=10).json()
    state = demo_rp.RPState(
        type("R", (), {"COOKIES": {demo_rp.COOKIE: agent.http.cookies[demo_rp.COOKIE]}})()
    )
    id_token = state.get("tokens")["id_token"]
    assert demo_rp.decode_and_verify(id_token, jwks).verified
    header, payload, signature = id_token.split(".")
    claims = json.loads(demo_rp._b64url_decode(payload))
    claims["sub"] = "someone-else"
    forged = f"{header}.{demo_rp._b64url(json.dumps(claims).encode())}.{signature}"
    decoded = demo_rp.decode_and_verify(forged, jwks)
    assert not decoded.verified and "does not verify" in decoded.problems[0]
    none_header = demo_rp._b64url(json.dumps({"alg": "none"}).encode())
    unsigned = demo_rp.decode_and_verify(f"{none_header}.{payload}.", jwks)
    assert not unsigned.verified


def test_credentials_from_the_environment_win(live_issuer, settings, tmp_path):
    settings.DEMO_RP = {"CLIENT_ID": "mine", "CLIENT_SECRET": "s3cret", "CREDENTIALS_FILE": tmp_path / "none"}
    assert demo_rp.credentials() == demo_rp.Credentials("mine", "s3cret", "settings (DEMO_RP_CLIENT_SECRET)")
    settings.DEMO_RP = {"CLIENT_ID": "", "CLIENT_SECRET": "", "CREDENTIALS_FILE": tmp_path / "none"}
    assert demo_rp.credentials() is None
    agent = UserAgent(live_issuer)
    assert 'id="no-credentials"' in agent.get("/demo-rp/").text
    assert agent.get("/demo-rp/start").headers["Location"] == "/demo-rp/"


def test_turned_off_in_production(live_issuer, settings):
    settings.DEMO_RP = None
    assert UserAgent(live_issuer).get("/demo-rp/").status_code == 404
