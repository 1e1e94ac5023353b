"""Review round 5 (attacker): findings in the changes since c047054 (the session engine, the sign-in's
SQL written once, the resource server's header memo and strict base64url, the login page's wait
for its passkey challenge request)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection, models
from django.test.utils import isolate_apps
from django.utils import timezone
from jwcrypto import jwk

from oidc_provider_ext import keys, resource
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import jws as jose
from oidc_provider_ext.internal import lookups
from tests.conftest import oidc_settings
from tests.e2e.conftest import chromium, rp  # noqa: F401 (fixtures of the browser test)
from tests.e2e.test_passkeys_browser import (  # noqa: F401 (page, rp_issuer: WebAuthn on localhost)
    page,
    rp_issuer,
    submit_password,
)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def other_spelling(segment: str) -> str | None:
    """``segment`` with its last character's unused low bit set: the same bytes to a lenient
    base64 decoder (RFC 4648 3.5: those bits are zero in the one canonical encoding); None when
    the segment's length leaves no unused bits."""
    if len(segment) % 4 not in (2, 3):
        return None
    return segment[:-1] + ALPHABET[ALPHABET.index(segment[-1]) ^ 1]


# --- one signature, one spelling ------------------------------------------------------------------


def api_claims() -> dict:
    now = int(time.time())
    return {
        "iss": app_settings.ISSUER, "sub": "42", "aud": "https://api.example", "client_id": "c",
        "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex, "scope": "openid",
    }  # fmt: skip


def assert_one_spelling(token: str) -> None:
    """``token`` validates, and the same token with its signature's last character respelled does not."""
    assert resource.validate_access_token(token, audience="https://api.example").sub == "42"
    head, _sep, signature = token.rpartition(".")
    other = other_spelling(signature)
    assert other is not None
    with pytest.raises(resource.InvalidToken):
        resource.validate_access_token(f"{head}.{other}", audience="https://api.example")


@pytest.mark.parametrize("length", range(1, 12))
def test_b64url_decode_refuses_a_non_canonical_last_character(length):
    """RFC 4648 3.5 / RFC 7515 2: the unused bits of the last character are zero. A decoder that
    ignores them reads 4 (2) more spellings of each segment of 4k+2 (4k+3) characters."""
    encoded = jose.b64url(bytes(range(length)))
    assert jose.b64url_decode(encoded) == bytes(range(length))
    other = other_spelling(encoded)
    if other is not None:
        with pytest.raises(ValueError):
            jose.b64url_decode(other)


@pytest.mark.django_db
@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_an_access_token_verifies_under_one_spelling_only(settings, alg):
    """The signature segment of an RS256 (342 characters) or ES256 (86) token has 4 unused bits:
    without the check above the same signature verifies under 16 spellings of the token, which a
    resource server that keys anything on the token string (a replay or revocation list, a cache)
    counts as 16 tokens."""
    oidc_settings(settings, RESOURCE_SERVER_CHECK_REVOCATION=False)
    claims = api_claims()
    token = keys.sign(claims, typ="at+jwt", alg=alg)
    assert_one_spelling(token)


@pytest.mark.django_db
def test_an_eddsa_access_token_verifies_under_one_spelling_only(settings, monkeypatch):
    """EdDSA tokens (from a remote JWKS) are verified by jwcrypto, whose decoder is lenient: the
    64-byte signature (86 characters) has 4 unused bits there too."""
    oidc_settings(settings, RESOURCE_SERVER_CHECK_REVOCATION=False)
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="ed")
    public = jwk.JWK(**key.export_public(as_dict=True))
    monkeypatch.setattr(resource, "_verification_key", lambda kid, url: public if kid == "ed" else None)
    from jwcrypto import jws as jwcrypto_jws

    claims = api_claims()
    signed = jwcrypto_jws.JWS(jose._json(claims))
    signed.add_signature(key, protected=jose._json({"alg": "EdDSA", "typ": "at+jwt", "kid": "ed"}).decode())
    token = signed.serialize(compact=True)
    assert_one_spelling(token)


# --- the session row's DELETE and a generic relation ------------------------------------------------


@pytest.mark.django_db(transaction=True)
@isolate_apps("oidc_provider_ext")
def test_delete_by_key_cascades_to_a_generic_relation():
    """A swapped session model with a ``GenericRelation`` (documented: deleting the object deletes
    the related generic rows, Django's collector follows ``private_fields``): the raw DELETE by key
    must not skip that cascade and leave the rows behind, pointing at a session that is gone."""
    from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
    from django.contrib.contenttypes.models import ContentType
    from django.contrib.sessions.base_session import AbstractBaseSession

    class ReviewTag(models.Model):
        content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
        object_id = models.CharField(max_length=40)
        about = GenericForeignKey("content_type", "object_id")

        class Meta:
            app_label = "oidc_provider_ext"
            db_table = "review5_tag"

        def __str__(self):
            return self.object_id

    class ReviewSession(AbstractBaseSession):
        tags = GenericRelation(ReviewTag)

        class Meta:
            app_label = "oidc_provider_ext"
            db_table = "review5_session"

    with connection.schema_editor() as editor:
        editor.create_model(ReviewTag)
        editor.create_model(ReviewSession)
    try:
        key = "k" * 32
        session = ReviewSession.objects.create(session_key=key, session_data="", expire_date=timezone.now())
        ReviewTag.objects.create(about=session)
        lookups.delete_by_key(ReviewSession, key, using="default")  # as ReviewSession(pk=key).delete()
        assert not ReviewSession.objects.exists()
        assert not ReviewTag.objects.exists()
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(ReviewSession)
            editor.delete_model(ReviewTag)


# --- the login page's wait for its passkey challenge request ----------------------------------------


@pytest.mark.live
def test_the_password_form_posts_again_after_a_stopped_sign_in(page, rp, monkeypatch):  # noqa: F811
    """The login page holds the password form while its autofill challenge request is out, then
    posts it itself. If that post does not leave the page (the user pressed Esc or the stop button
    while the server was slow), the form must still post when the user clicks again, not swallow
    every later click (the page looked dead until reloaded)."""
    from django.contrib.sessions.middleware import SessionMiddleware

    from oidc_provider_ext.views import login

    release_options = threading.Event()
    posts: list[float] = []
    arrive, post = SessionMiddleware.process_request, login.LoginView.post

    def arriving(self, request):
        if request.path.endswith("/passkeys/options"):
            release_options.wait(5)  # the challenge request is out when the password is posted
        return arrive(self, request)

    answered: list[int] = []

    def posting(self, request, *args, **kwargs):
        posts.append(time.monotonic())
        try:
            if len(posts) == 1:
                time.sleep(2)  # a slow answer: the user stops the page meanwhile
            return post(self, request, *args, **kwargs)
        finally:
            answered.append(len(answered))

    monkeypatch.setattr(SessionMiddleware, "process_request", arriving)
    monkeypatch.setattr(login.LoginView, "post", posting)
    submit_password(page, rp)
    time.sleep(0.3)
    assert not posts  # held until the challenge request is answered
    release_options.set()
    deadline = time.monotonic() + 5
    while not posts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(posts) == 1
    # Esc (the stop button): the post's navigation is abandoned, the page stays.
    page.context.new_cdp_session(page).send("Page.stopLoading")
    time.sleep(0.3)
    page.click("button[type=submit]")
    deadline = time.monotonic() + 5
    while len(posts) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(posts) == 2, "the second click did not post the form"
    # Nothing of this page may still be served when the next test runs (the test client records
    # every template rendered, in any thread).
    deadline = time.monotonic() + 10
    while len(answered) < len(posts) and time.monotonic() < deadline:
        time.sleep(0.05)
    page.wait_for_load_state("networkidle")
    page.goto("about:blank")


# --- the session engine: what Django's database sessions guarantee (these hold) ---------------------


@pytest.mark.django_db
@pytest.mark.parametrize("save_every_request", [False, True])
def test_an_attacker_chosen_key_that_has_no_row_does_not_survive_sign_in(settings, user, save_every_request):
    """Session fixation with a key the attacker made up (no row: the INSERT is the only check of a
    new key now): the sign-in is stored under a key the server drew, never the planted one."""
    from django.contrib.sessions.models import Session
    from django.test import Client
    from django.urls import reverse

    from oidc_provider_ext.sessions import SessionStore, stored_key

    from .factories import USER_PASSWORD

    settings.SESSION_SAVE_EVERY_REQUEST = save_every_request
    planted = "attackerchosenkey0123456789abcd"
    browser = Client()
    browser.cookies["sessionid"] = planted
    login = reverse("oidc_provider_ext:login")
    assert browser.get(login).status_code == 200
    browser.cookies["sessionid"] = planted  # planted again after the page's own cookie
    response = browser.post(login, {"username": user.username, "password": USER_PASSWORD})
    assert response.status_code == 302
    assert browser.cookies["sessionid"].value != planted
    assert not Session.objects.filter(session_key=stored_key(planted)).exists()
    assert SessionStore(browser.cookies["sessionid"].value).load()["_auth_user_id"] == str(user.pk)


@pytest.mark.django_db
def test_a_sign_out_in_one_tab_interrupts_a_write_in_another():
    """Two requests of one browser: one signs out (the row is deleted) while the other has read
    the session and writes it. As with Django's store: UpdateError, which the session middleware
    turns into SessionInterrupted (400), and no row is brought back under any key."""
    from django.contrib.sessions.backends.base import UpdateError
    from django.contrib.sessions.models import Session

    from oidc_provider_ext.sessions import SessionStore

    store = SessionStore()
    store["who"] = "alice"
    store.create()
    writer = SessionStore(store.session_key)
    assert writer["who"] == "alice"  # read by this request
    SessionStore(store.session_key).flush()  # the other tab's sign-out
    writer["more"] = 1
    with pytest.raises(UpdateError):
        writer.save()
    assert not Session.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic_requests", [False, True])
def test_a_sign_in_failing_after_cycle_key_leaves_no_signed_in_session(
    settings, monkeypatch, atomic_requests
):
    """The sign-in fails (500) after cycle_key() deleted the old row and before the response saved
    the new one: nothing signed in is stored and no cookie is set. In autocommit the old row is
    gone (the browser is signed out, as the module says); with ATOMIC_REQUESTS its DELETE is rolled
    back with the view and the browser keeps its session as it was."""
    from django.contrib.sessions.models import Session
    from django.test import Client
    from django.urls import reverse

    from oidc_provider_ext.internal import op_sessions
    from oidc_provider_ext.sessions import SessionStore, stored_key

    from .factories import USER_PASSWORD, UserFactory

    monkeypatch.setitem(settings.DATABASES["default"], "ATOMIC_REQUESTS", atomic_requests)
    user = UserFactory()
    browser = Client(raise_request_exception=False)
    login = reverse("oidc_provider_ext:login")
    assert browser.get(login).status_code == 200
    session = browser.session
    session["planted"] = True
    session.save()
    before = browser.cookies["sessionid"].value

    def fail(*args, **kwargs):
        raise RuntimeError("the sign-in fails after login()")

    monkeypatch.setattr(op_sessions, "start", fail)
    response = browser.post(login, {"username": user.username, "password": USER_PASSWORD})
    assert response.status_code == 500
    assert browser.cookies["sessionid"].value == before
    for row in Session.objects.all():  # every row, read as stored
        assert "_auth_user_id" not in SessionStore().decode(row.session_data)
    assert Session.objects.filter(session_key=stored_key(before)).exists() == atomic_requests
