"""Sessions and logout that reach the relying parties: OpenID Connect RP-Initiated Logout 1.0 and
Back-Channel Logout 1.0."""

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO
from urllib.parse import parse_qs

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import backchannel, outbound
from oidc_provider_ext.models import BackchannelDelivery, ClientProfile, OPSession
from oidc_provider_ext.tokens import BACKCHANNEL_LOGOUT_EVENT

from . import presets
from .factories import ApplicationFactory, TenantFactory, TenantMembershipFactory, UserFactory
from .flow import authorize_url, exchange, get_code, query_of, token_request, verify_jwt
from .servers import Server, answer, hold, redirect, trickle_headers

pytestmark = pytest.mark.django_db
LOGGED_OUT = "https://rp.example.com/logged-out"


def sign_in(browser, rp, app, user, **params):
    code, _ = get_code(browser, app, user, **params)
    response = exchange(rp, app, code)
    assert response.status_code == 200
    return response.json()


def end_session(browser, **params):
    return browser.get(reverse("oidc_provider_ext:endsession"), params)


def signed_in(browser) -> bool:
    return "_auth_user_id" in browser.session


def works(rp, access_token) -> bool:
    response = rp.get(reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {access_token}")
    return response.status_code == 200


class Receiver:
    """A real HTTP server standing in for an RP's back-channel logout endpoint."""

    def __init__(self, status=200):
        self.tokens: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                body = parse_qs(self.rfile.read(length).decode())
                assert self.headers["Content-Type"] == "application/x-www-form-urlencoded"
                receiver.tokens.extend(body["logout_token"])
                self.send_response(status)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/backchannel"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def dead_url() -> str:
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()  # nothing listens there any more
    return f"http://127.0.0.1:{port}/backchannel"


class TestIdTokenHint:
    def test_hint_of_this_session_logs_out_without_confirmation(self, browser, rp, user, confidential_app):
        tokens = sign_in(browser, rp, confidential_app, user)
        response = end_session(
            browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT, state="s1"
        )
        assert response.status_code == 302 and response["Location"] == f"{LOGGED_OUT}?state=s1"
        assert not signed_in(browser)

    def test_invalid_hint_is_an_error_page_and_keeps_the_session(self, browser, rp, user, confidential_app):
        sign_in(browser, rp, confidential_app, user)
        response = end_session(browser, id_token_hint="not.a.token", post_logout_redirect_uri=LOGGED_OUT)
        assert response.status_code == 400 and "Location" not in response
        assert signed_in(browser)

    def test_hint_of_another_user_asks_for_confirmation(self, browser, rp, user, confidential_app):
        other_browser = Client()
        theirs = sign_in(other_browser, rp, confidential_app, UserFactory())
        sign_in(browser, rp, confidential_app, user)
        page = end_session(browser, id_token_hint=theirs["id_token"], post_logout_redirect_uri=LOGGED_OUT)
        assert page.status_code == 200 and page.templates[0].name == "oidc_provider_ext/logout_confirm.html"
        assert signed_in(browser)
        response = browser.post(
            reverse("oidc_provider_ext:endsession"),
            {"id_token_hint": theirs["id_token"], "post_logout_redirect_uri": LOGGED_OUT, "confirm": "yes"},
        )
        assert response["Location"] == LOGGED_OUT and not signed_in(browser)
        assert signed_in(other_browser)  # the hint's own user is not touched

    @pytest.mark.oidc_settings(ID_TOKEN_EXPIRE_SECONDS=-5)
    def test_expired_hint_is_accepted(self, browser, rp, user, confidential_app):
        tokens = sign_in(browser, rp, confidential_app, user)
        response = end_session(browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT)
        assert response["Location"] == LOGGED_OUT and not signed_in(browser)

    def test_hint_signed_by_a_rotated_key(self, browser, rp, user, confidential_app):
        from oidc_provider_ext import keys

        tokens = sign_in(browser, rp, confidential_app, user)
        keys.rotate()
        response = end_session(browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT)
        assert response["Location"] == LOGGED_OUT and not signed_in(browser)

    def test_hint_for_another_client_than_client_id(self, browser, rp, user, confidential_app):
        tokens = sign_in(browser, rp, confidential_app, user)
        other = ApplicationFactory()
        response = end_session(browser, id_token_hint=tokens["id_token"], client_id=other.client_id)
        assert response.status_code == 400 and signed_in(browser)


class TestPostLogoutRedirect:
    def test_unregistered_uri_is_refused(self, browser, rp, user, confidential_app):
        tokens = sign_in(browser, rp, confidential_app, user)
        response = end_session(
            browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri="https://evil.example/"
        )
        assert response.status_code == 400 and "Location" not in response and signed_in(browser)

    def test_another_clients_uri_is_refused(self, browser, rp, user, confidential_app):
        ApplicationFactory(post_logout_redirect_uris="https://other.example/bye")
        tokens = sign_in(browser, rp, confidential_app, user)
        response = end_session(
            browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri="https://other.example/bye"
        )
        assert response.status_code == 400 and signed_in(browser)

    def test_uri_with_client_id_but_no_hint_confirms_then_redirects(
        self, browser, rp, user, confidential_app
    ):
        sign_in(browser, rp, confidential_app, user)
        params = {
            "client_id": confidential_app.client_id,
            "post_logout_redirect_uri": LOGGED_OUT,
            "state": "xyz",
        }
        page = end_session(browser, **params)
        assert page.status_code == 200 and 'name="state" value="xyz"' in page.content.decode()
        response = browser.post(reverse("oidc_provider_ext:endsession"), {**params, "confirm": "yes"})
        assert response["Location"] == f"{LOGGED_OUT}?state=xyz"

    def test_uri_without_client_is_refused(self, browser):
        assert end_session(browser, post_logout_redirect_uri=LOGGED_OUT).status_code == 400

    def test_nowhere_to_return_shows_signed_out_page(self, browser, rp, user, confidential_app):
        tokens = sign_in(browser, rp, confidential_app, user)
        response = end_session(browser, id_token_hint=tokens["id_token"])
        assert response.status_code == 200 and "You are signed out" in response.content.decode()

    def test_not_signed_in_still_returns_to_the_client(self, browser, rp, user, confidential_app):
        tokens = sign_in(browser, rp, confidential_app, user)
        browser.logout()
        response = end_session(
            browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT, state="a"
        )
        assert response["Location"] == f"{LOGGED_OUT}?state=a"


class TestConfirmation:
    def test_get_without_hint_asks_and_does_not_log_out(self, browser, rp, user, confidential_app):
        sign_in(browser, rp, confidential_app, user)
        page = end_session(browser)
        assert page.status_code == 200 and page.templates[0].name == "oidc_provider_ext/logout_confirm.html"
        assert signed_in(browser)

    def test_confirmation_needs_csrf(self, browser, user, rp, confidential_app):
        sign_in(browser, rp, confidential_app, user)
        strict = Client(enforce_csrf_checks=True)
        strict.cookies = browser.cookies
        response = strict.post(reverse("oidc_provider_ext:endsession"), {"confirm": "yes"})
        assert response.status_code == 403 and signed_in(strict)

    def test_rp_may_post_the_request(self, user, rp, confidential_app):
        signed_in_browser = Client()
        tokens = sign_in(signed_in_browser, rp, confidential_app, user)
        browser = Client(enforce_csrf_checks=True)  # an RP's form post carries no CSRF token of ours
        browser.cookies = signed_in_browser.cookies
        response = browser.post(
            reverse("oidc_provider_ext:endsession"),
            {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGGED_OUT},
        )
        assert response["Location"] == LOGGED_OUT and not signed_in(browser)


class TestWhatEnds:
    def test_only_this_sessions_tokens_are_revoked(self, rp, user, confidential_app):
        laptop, phone = Client(), Client()
        on_laptop = sign_in(laptop, rp, confidential_app, user)
        on_phone = sign_in(phone, rp, confidential_app, user)
        offline = sign_in(laptop, rp, confidential_app, user, scope="openid offline_access")
        end_session(laptop, id_token_hint=on_laptop["id_token"])
        assert not works(rp, on_laptop["access_token"])
        assert works(rp, on_phone["access_token"]) and signed_in(phone)
        # OIDC Core 11: offline access outlives the session.
        auth = (confidential_app.client_id, confidential_app.raw_secret)
        refreshed = token_request(
            rp, {"grant_type": "refresh_token", "refresh_token": offline["refresh_token"]}, auth=auth
        )
        assert refreshed.status_code == 200

    def test_prompt_none_after_logout_is_login_required(self, browser, rp, user, confidential_app):
        tokens = sign_in(browser, rp, confidential_app, user)
        end_session(browser, id_token_hint=tokens["id_token"])
        query = query_of(browser.get(authorize_url(confidential_app, prompt="none"))["Location"])
        assert query["error"] == "login_required"

    def test_the_hints_tenant_session_ends_the_other_stays(self, browser, rp, user, confidential_app):
        acme, globex = TenantFactory(code="acme"), TenantFactory(code="globex")
        for tenant in (acme, globex):
            TenantMembershipFactory(tenant=tenant, user=user)
        from .test_tenants import code_from, sign_in_through

        first = code_from(
            browser, sign_in_through(browser, authorize_url(confidential_app, acr_values="tenant:acme"), user)
        )
        at_acme = exchange(rp, confidential_app, first).json()
        code_from(
            browser,
            sign_in_through(browser, authorize_url(confidential_app, acr_values="tenant:globex"), user),
        )
        end_session(browser, id_token_hint=at_acme["id_token"])
        assert signed_in(browser)
        for code, expected in (("acme", "login_required"), ("globex", None)):
            query = query_of(
                browser.get(authorize_url(confidential_app, acr_values=f"tenant:{code}", prompt="none"))[
                    "Location"
                ]
            )
            assert query.get("error") == expected


def sent():
    """Wait for this process's back-channel worker pool to finish what the logouts queued."""
    backchannel.flush()


# Transactional: deliveries are handed to the worker pool when the logout commits.
@pytest.mark.django_db(transaction=True)
class TestBackChannel:
    def test_receiver_gets_a_verifiable_logout_token(self, browser, rp, user, confidential_app):
        with Receiver() as receiver:
            ClientProfile.objects.filter(application=confidential_app).update(
                backchannel_logout_uri=receiver.url
            )
            tokens = sign_in(browser, rp, confidential_app, user)
            sid = verify_jwt(tokens["id_token"])["sid"]
            end_session(browser, id_token_hint=tokens["id_token"])
            sent()
        (logout_token,) = receiver.tokens
        claims = verify_jwt(logout_token, typ="logout+jwt")
        assert claims["iss"] == app_settings.ISSUER
        assert claims["aud"] == confidential_app.client_id
        assert claims["sub"] == str(user.pk) and claims["sid"] == sid
        assert claims["events"] == {BACKCHANNEL_LOGOUT_EVENT: {}}
        assert claims["exp"] > claims["iat"] and claims["jti"]
        assert "nonce" not in claims
        delivery = BackchannelDelivery.objects.get()
        assert delivery.status == "delivered" and delivery.attempts == 1

    def test_only_clients_that_received_tokens_are_told(self, browser, rp, user, confidential_app):
        bystander = ApplicationFactory()
        with Receiver() as receiver:
            ClientProfile.objects.filter(application__in=[confidential_app, bystander]).update(
                backchannel_logout_uri=receiver.url
            )
            tokens = sign_in(browser, rp, confidential_app, user)
            end_session(browser, id_token_hint=tokens["id_token"])
            sent()
        assert [verify_jwt(t, typ="logout+jwt")["aud"] for t in receiver.tokens] == [
            confidential_app.client_id
        ]

    def test_dead_receiver_does_not_break_logout_and_can_be_retried(
        self, browser, rp, user, confidential_app
    ):
        ClientProfile.objects.filter(application=confidential_app).update(backchannel_logout_uri=dead_url())
        tokens = sign_in(browser, rp, confidential_app, user)
        response = end_session(browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT)
        assert response["Location"] == LOGGED_OUT and not signed_in(browser)
        sent()
        delivery = BackchannelDelivery.objects.get()
        # A coarse category, never "[Errno 111] Connection refused" (a port oracle in the admin).
        assert delivery.status == "failed" and delivery.last_error == "connection failed"
        assert delivery.next_attempt > timezone.now()  # backing off
        with Receiver() as receiver:
            BackchannelDelivery.objects.update(uri=receiver.url)
            out = StringIO()
            call_command("oidc_backchannel_retry", stdout=out)
            assert "Delivered 0" in out.getvalue() and not receiver.tokens  # not due yet
            BackchannelDelivery.objects.update(next_attempt=timezone.now())  # the backoff passed
            call_command("oidc_backchannel_retry", stdout=out)
        assert "Delivered 1" in out.getvalue()
        assert BackchannelDelivery.objects.get().status == "delivered" and len(receiver.tokens) == 1

    def test_error_status_is_a_failed_delivery(self, browser, rp, user, confidential_app):
        with Receiver(status=500) as receiver:
            ClientProfile.objects.filter(application=confidential_app).update(
                backchannel_logout_uri=receiver.url
            )
            tokens = sign_in(browser, rp, confidential_app, user)
            end_session(browser, id_token_hint=tokens["id_token"])
            sent()
        delivery = BackchannelDelivery.objects.get()
        assert delivery.status == "failed" and delivery.last_error == "HTTP 5xx"

    def test_any_sign_out_path_notifies(self, browser, rp, user, confidential_app):
        with Receiver() as receiver:
            ClientProfile.objects.filter(application=confidential_app).update(
                backchannel_logout_uri=receiver.url
            )
            tokens = sign_in(browser, rp, confidential_app, user)
            browser.post(reverse("logout"))  # django.contrib.auth's logout view
            sent()
        assert len(receiver.tokens) == 1 and not works(rp, tokens["access_token"])

    def test_discovery(self, client):
        meta = client.get("/.well-known/openid-configuration").json()
        assert meta["backchannel_logout_supported"] is True
        assert meta["backchannel_logout_session_supported"] is True
        assert meta["end_session_endpoint"].endswith("/connect/endsession")


def logged_out_with_rp_at(url, browser, rp, user, app) -> BackchannelDelivery:
    """Sign in, point the client's back-channel logout URI at ``url``, log out: the delivery."""
    ClientProfile.objects.filter(application=app).update(backchannel_logout_uri=url)
    tokens = sign_in(browser, rp, app, user)
    response = end_session(browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT)
    assert response["Location"] == LOGGED_OUT and not signed_in(browser)
    return BackchannelDelivery.objects.get()


class TestOutbox:
    """Back-channel deliveries never hold the user's request, and each has one total deadline."""

    @pytest.mark.django_db(transaction=True)
    def test_logout_returns_while_the_rp_still_holds_the_connection(
        self, browser, rp, user, confidential_app
    ):
        with Server(hold()) as holding:
            delivery = logged_out_with_rp_at(holding.url, browser, rp, user, confidential_app)
            # The user has their answer; the RP has not answered (it waits for `release`).
            delivery.refresh_from_db()
            assert delivery.status in ("pending", "sending") and delivery.last_error == ""
            holding.release.set()
            sent()
        delivery.refresh_from_db()
        assert delivery.status == "delivered" and delivery.attempts == 1 and holding.requests == 1

    @pytest.mark.oidc_settings(BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS=0.5)
    def test_trickling_rp_is_cut_at_the_total_deadline(self, browser, rp, user, confidential_app):
        # One header byte every 0.2 s: each read is well within 0.5 s, the whole answer is not.
        with Server(trickle_headers(interval=0.2)) as trickler:
            delivery = logged_out_with_rp_at(trickler.url, browser, rp, user, confidential_app)
            assert delivery.status == "pending"  # not sent inside the request (no commit in this test)
            assert backchannel.attempt(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == "failed" and delivery.last_error == outbound.TIMEOUT

    def test_redirect_is_not_followed_nor_delivered(self, browser, rp, user, confidential_app):
        with Server(answer(200)) as internal, Server(redirect(internal.url)) as rp_endpoint:
            delivery = logged_out_with_rp_at(rp_endpoint.url, browser, rp, user, confidential_app)
            backchannel.attempt(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == "failed" and delivery.last_error == outbound.REDIRECT
        assert rp_endpoint.requests == 1 and internal.requests == 0

    @pytest.mark.oidc_settings(presets.NO_LOOPBACK)
    def test_loopback_rp_is_refused_unless_allowed(self, browser, rp, user, confidential_app):
        with Receiver() as receiver:
            delivery = logged_out_with_rp_at(receiver.url, browser, rp, user, confidential_app)
            backchannel.attempt(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == "failed" and delivery.last_error == outbound.REFUSED
        assert receiver.tokens == []

    def test_private_rp_is_refused_by_policy(self, browser, rp, user, confidential_app):
        delivery = logged_out_with_rp_at(
            "https://169.254.169.254/latest/meta-data", browser, rp, user, confidential_app
        )
        backchannel.attempt(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == "failed" and delivery.last_error == outbound.REFUSED

    def test_a_claimed_delivery_is_not_sent_twice(self, browser, rp, user, confidential_app):
        with Receiver() as receiver:
            delivery = logged_out_with_rp_at(receiver.url, browser, rp, user, confidential_app)
            # Another worker holds the lease: neither this process nor the command sends it.
            BackchannelDelivery.objects.filter(pk=delivery.pk).update(
                status="sending", attempts=1, next_attempt=timezone.now() + timezone.timedelta(seconds=60)
            )
            assert not backchannel.attempt(delivery.pk)
            call_command("oidc_backchannel_retry", "--workers", "1", stdout=StringIO())
            assert receiver.tokens == []
            # Its worker died: once the lease lapses the command sends it.
            BackchannelDelivery.objects.filter(pk=delivery.pk).update(next_attempt=timezone.now())
            call_command("oidc_backchannel_retry", "--workers", "1", stdout=StringIO())
            assert len(receiver.tokens) == 1
            # Delivered: never again.
            assert not backchannel.attempt(delivery.pk)
            call_command("oidc_backchannel_retry", "--workers", "1", stdout=StringIO())
        assert len(receiver.tokens) == 1
        delivery.refresh_from_db()
        assert delivery.status == "delivered" and delivery.attempts == 2

    def test_retries_back_off_and_stop_at_the_cap(self, browser, rp, user, confidential_app):
        from .servers import dead_url as closed_port

        delivery = logged_out_with_rp_at(closed_port(), browser, rp, user, confidential_app)
        waits = []
        for _ in range(3):
            BackchannelDelivery.objects.filter(pk=delivery.pk).update(next_attempt=timezone.now())
            assert backchannel.attempt(delivery.pk)
            delivery.refresh_from_db()
            waits.append(delivery.next_attempt - delivery.last_attempt)
        assert waits[0] < waits[1] < waits[2]  # exponential backoff between attempts
        BackchannelDelivery.objects.filter(pk=delivery.pk).update(next_attempt=timezone.now())
        out = StringIO()
        call_command("oidc_backchannel_retry", "--max-attempts", "3", "--workers", "1", stdout=out)
        assert "given up 1" in out.getvalue()
        delivery.refresh_from_db()
        assert delivery.attempts == 3 and delivery.status == "failed"

    def test_full_pool_leaves_deliveries_to_the_retry_command(
        self, monkeypatch, browser, rp, user, confidential_app
    ):
        import threading

        with Receiver() as receiver:
            delivery = logged_out_with_rp_at(receiver.url, browser, rp, user, confidential_app)
            backchannel._pool.get()
            full = threading.BoundedSemaphore(1)
            full.acquire()
            monkeypatch.setattr(backchannel._pool, "slots", full)
            assert backchannel.submit([delivery.pk]) == 0
            delivery.refresh_from_db()
            assert delivery.status == "pending"
            out = StringIO()
            call_command("oidc_backchannel_retry", "--workers", "1", stdout=out)
        assert "Delivered 1" in out.getvalue() and len(receiver.tokens) == 1

    def test_each_attempt_mints_a_fresh_token(self, browser, rp, user, confidential_app):
        with Receiver(status=500) as receiver:
            delivery = logged_out_with_rp_at(receiver.url, browser, rp, user, confidential_app)
            for _ in range(2):
                BackchannelDelivery.objects.filter(pk=delivery.pk).update(next_attempt=timezone.now())
                backchannel.attempt(delivery.pk)
        first, second = (verify_jwt(t, typ="logout+jwt") for t in receiver.tokens)
        assert first["jti"] != second["jti"]


@pytest.mark.django_db(transaction=True)
class TestSignedInSessions:
    def test_lists_sessions_with_browser_and_ends_another_device(self, rp, user, confidential_app):
        laptop = Client(HTTP_USER_AGENT="Firefox on Laptop")
        phone = Client(HTTP_USER_AGENT="Safari on Phone")
        with Receiver() as receiver:
            ClientProfile.objects.filter(application=confidential_app).update(
                backchannel_logout_uri=receiver.url
            )
            sign_in(laptop, rp, confidential_app, user)
            on_phone = sign_in(phone, rp, confidential_app, user)
            page = laptop.get(reverse("oidc_provider_ext:sessions"))
            html = page.content.decode()
            assert "Firefox on Laptop" in html and "Safari on Phone" in html and "this browser" in html
            phone_session = OPSession.objects.get(user_agent="Safari on Phone")
            response = laptop.post(
                reverse("oidc_provider_ext:session-end", args=[phone_session.pk]), follow=True
            )
            assert "That session is signed out" in response.content.decode()
            sent()
        # Nothing in the OP session row leads to the phone's Django session: the phone learns on its
        # next request, and is sent to sign in.
        assert phone.get(reverse("oidc_provider_ext:sessions")).status_code == 302
        assert not signed_in(phone) and signed_in(laptop)
        assert not works(rp, on_phone["access_token"])
        assert [verify_jwt(t, typ="logout+jwt")["sid"] for t in receiver.tokens] == [phone_session.sid]

    def test_cannot_end_another_users_session(self, rp, user, confidential_app):
        mine, theirs = Client(), Client()
        sign_in(mine, rp, confidential_app, user)
        sign_in(theirs, rp, confidential_app, UserFactory())
        their_session = OPSession.objects.exclude(user=user).get()
        assert mine.post(reverse("oidc_provider_ext:session-end", args=[their_session.pk])).status_code == 404
        assert signed_in(theirs)

    def test_ending_this_browsers_session_signs_out(self, browser, rp, user, confidential_app):
        sign_in(browser, rp, confidential_app, user)
        mine = OPSession.objects.get()
        browser.post(reverse("oidc_provider_ext:session-end", args=[mine.pk]))
        assert not signed_in(browser)
        mine.refresh_from_db()
        assert mine.ended is not None


def test_admin_shows_sessions_and_deliveries(client, browser, rp, user, confidential_app):
    from django.contrib.auth import get_user_model

    ClientProfile.objects.filter(application=confidential_app).update(backchannel_logout_uri=dead_url())
    tokens = sign_in(browser, rp, confidential_app, user)
    end_session(browser, id_token_hint=tokens["id_token"])
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw-root-123"))
    op_session = OPSession.objects.get(user=user)
    page = client.get(f"/admin/oidc_provider_ext/opsession/{op_session.pk}/change/")
    assert page.status_code == 200 and confidential_app.name in page.content.decode()
    assert "failed" in client.get("/admin/oidc_provider_ext/backchanneldelivery/").content.decode()
