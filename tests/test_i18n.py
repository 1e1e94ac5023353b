"""Languages of the hosted pages (issue 14, item 9): every string translatable, catalogues shipped
complete and compiled, the language chosen by ui_locales, then Accept-Language, then the site
default, right-to-left for Arabic."""

from __future__ import annotations

import gettext
import re
import shutil
from html import unescape
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from oidc_provider_ext.conf import SHIPPED_LANGUAGES

from .factories import ApplicationFactory, TenantFactory, TenantMembershipFactory
from .flow import authorize_url, login
from .live import require

PACKAGE = Path(__file__).resolve().parent.parent / "oidc_provider_ext"
LOCALE = PACKAGE / "locale"
TRANSLATED = [code for code in SHIPPED_LANGUAGES if code != "en"]
PLACEHOLDER = re.compile(r"%\(\w+\)s|<[^>]+>")


def unquote(value: str) -> str:
    return value.replace('\\"', '"').replace("\\\\", "\\")


def po_entries(path: Path) -> dict[str, str]:
    """msgid -> msgstr of a .po file (single-line entries, as makemessages --no-wrap writes them);
    a plural entry's msgstr is its forms joined by NUL, as in the compiled catalogue."""
    text = path.read_text(encoding="utf-8")
    assert "#, fuzzy" not in text, f"{path}: fuzzy entries are not used by gettext"
    entries = {}
    for context, msgid, msgstr in re.findall(
        r'^(?:msgctxt "(.*)"\n)?msgid "(.*)"\nmsgstr "(.*)"$', text, re.M
    ):
        if msgid:  # a msgctxt is part of the key, as in the compiled catalogue
            entries[f"{unquote(context)}\x04{unquote(msgid)}" if context else unquote(msgid)] = unquote(
                msgstr
            )
    for msgid, plural, forms in re.findall(
        r'^msgid "(.*)"\nmsgid_plural "(.*)"\n((?:msgstr\[\d+\] ".*"\n?)+)', text, re.M
    ):
        values = [unquote(value) for value in re.findall(r'^msgstr\[\d+\] "(.*)"$', forms, re.M)]
        entries[unquote(msgid)] = "\x00".join(values)
        PLURALS[unquote(msgid)] = unquote(plural)
    return entries


PLURALS: dict[str, str] = {}  # singular msgid -> msgid_plural


def page_text(response) -> str:
    html = response.content.decode()
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


# --- the catalogues ------------------------------------------------------------------------------


def test_rtl_language_is_shipped():
    assert {"de", "fr", "es", "nl", "pt"} <= set(TRANSLATED)
    assert {"ar", "he"} & set(TRANSLATED), "one right-to-left language"


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalogue_is_complete_and_compiled(language):
    po = LOCALE / language / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")
    entries = po_entries(po)
    assert entries, po
    untranslated = [msgid for msgid, msgstr in entries.items() if not msgstr]
    assert not untranslated, f"{language}: untranslated {untranslated}"
    for msgid, msgstr in entries.items():
        # A lost %(name)s or <strong> would break the page (or drop the user's name).
        if msgid in PLURALS:
            forms = msgstr.split("\x00")
            assert all(form for form in forms), (language, msgid)
            allowed = set(PLACEHOLDER.findall(PLURALS[msgid]))
            assert all(set(PLACEHOLDER.findall(form)) <= allowed for form in forms), (language, msgid)
        else:
            assert sorted(PLACEHOLDER.findall(msgid)) == sorted(PLACEHOLDER.findall(msgstr)), (
                language,
                msgid,
            )
    with mo.open("rb") as handle:
        catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    compiled: dict[str, list[str]] = {}
    for key, value in catalog.items():
        msgid = key[0] if isinstance(key, tuple) else key
        if msgid:
            compiled.setdefault(msgid, []).append(value)
    assert {msgid: "\x00".join(values) for msgid, values in compiled.items()} == entries, (
        f"{mo} is not compiled from {po.name}: run `make messages`"
    )


def test_catalogues_cover_every_marked_string(tmp_path, monkeypatch, settings):
    """The shipped catalogues hold exactly the strings the code and templates mark: a string added
    without a translation (or a stale one) fails here."""
    require(
        shutil.which("xgettext") is not None,
        "GNU gettext (xgettext)",
        "run `make test` or apt-get install gettext",
    )
    copy = tmp_path / "oidc_provider_ext"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    monkeypatch.chdir(copy)
    settings.LOCALE_PATHS = []
    call_command("makemessages", locale=["de"], verbosity=0, **MAKEMESSAGES_OPTIONS)
    fresh = set(po_entries(copy / "locale/de/LC_MESSAGES/django.po"))
    for language in TRANSLATED:
        shipped = set(po_entries(LOCALE / language / "LC_MESSAGES" / "django.po"))
        assert fresh == shipped, (
            f"{language}: missing {sorted(fresh - shipped)}, stale {sorted(shipped - fresh)}"
        )


# The options of the Makefile's messages target: the admin, models and checks speak to operators
# in English (the hosted pages and user messages are what is translated).
MAKEMESSAGES_OPTIONS = {
    "no_location": True,
    "no_wrap": True,
    "no_obsolete": True,
    "ignore_patterns": [
        "models/*",
        "migrations/*",
        "admin.py",
        "templates/admin/*",
        "management/*",
        "checks.py",
    ],
}


def test_shipped_languages_are_offered_by_default(client, db):
    meta = client.get(reverse("oidc_provider_ext:discovery")).json()
    assert meta["ui_locales_supported"] == list(SHIPPED_LANGUAGES)


# --- choosing the language -----------------------------------------------------------------------


def login_page(client, app, **headers_and_params):
    headers = headers_and_params.pop("headers", {})
    response = client.get(authorize_url(app, **headers_and_params), headers=headers)
    return client.get(response["Location"], headers=headers)


def lang_of(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.content.decode()).group(1)


class TestLanguageChoice:
    def test_ui_locales_wins_over_accept_language(self, client, confidential_app):
        page = login_page(client, confidential_app, ui_locales="fr", headers={"Accept-Language": "de"})
        assert lang_of(page) == "fr" and "Se connecter" in page_text(page)

    def test_accept_language_when_ui_locales_names_nothing_offered(self, client, confidential_app):
        page = login_page(client, confidential_app, ui_locales="ja", headers={"Accept-Language": "nl"})
        assert lang_of(page) == "nl" and "Aanmelden" in page_text(page)

    def test_accept_language_quality_values(self, client, confidential_app):
        header = "ja;q=1, es;q=0.5, de;q=0.8, *;q=0.1"
        assert lang_of(login_page(client, confidential_app, headers={"Accept-Language": header})) == "de"

    def test_accept_language_region_falls_back_to_the_language(self, client, confidential_app):
        assert lang_of(login_page(client, confidential_app, headers={"Accept-Language": "pt-BR"})) == "pt"

    def test_site_default_when_nothing_matches(self, client, confidential_app, settings):
        settings.LANGUAGE_CODE = "es"
        page = login_page(client, confidential_app, headers={"Accept-Language": "ja, zh;q=0.5"})
        assert lang_of(page) == "es" and "Iniciar sesión" in page_text(page)

    @pytest.mark.oidc_settings(UI_LOCALES=["en", "fr"])
    def test_only_offered_languages_are_chosen(self, client, confidential_app):
        assert (
            lang_of(login_page(client, confidential_app, headers={"Accept-Language": "de, fr;q=0.5"})) == "fr"
        )

    def test_pages_vary_on_accept_language(self, client, db):
        response = client.get(reverse("oidc_provider_ext:login"), headers={"Accept-Language": "de"})
        assert "Accept-Language" in response["Vary"]
        assert lang_of(response) == "de"

    def test_account_pages_follow_accept_language(self, client, user):
        login(client, user)
        response = client.get(reverse("oidc_provider_ext:sessions"), headers={"Accept-Language": "fr"})
        assert "Où vous êtes connecté" in page_text(response)

    def test_arabic_is_right_to_left(self, client, confidential_app):
        page = login_page(client, confidential_app, ui_locales="ar")
        html = page.content.decode()
        assert '<html lang="ar" dir="rtl">' in html
        assert "bootstrap.rtl.min.css" in html and "bootstrap.min.css" not in html
        assert "تسجيل الدخول" in page_text(page)

    def test_left_to_right_languages_say_so(self, client, confidential_app):
        html = login_page(client, confidential_app, ui_locales="de").content.decode()
        assert '<html lang="de" dir="ltr">' in html and "bootstrap.min.css" in html


# --- every page, no English left -----------------------------------------------------------------


def english_sentences() -> list[str]:
    """The catalogue's English strings long enough to be recognised in a page."""
    return [
        msgid
        for msgid, german in po_entries(LOCALE / "de" / "LC_MESSAGES" / "django.po").items()
        if "%(" not in msgid
        and "<" not in msgid
        and len(msgid) >= 8
        and msgid != german
        and msgid not in PLURALS
    ]


def assert_german(response, *expected: str):
    text = page_text(response)
    leftovers = [sentence for sentence in english_sentences() if sentence in text]
    assert not leftovers, f"English on a German page: {leftovers}"
    for phrase in expected:
        assert phrase in text, (phrase, text[:600])


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_catalogue_renders_the_login_page(client, confidential_app, language):
    page = login_page(client, confidential_app, ui_locales=language)
    translations = po_entries(LOCALE / language / "LC_MESSAGES" / "django.po")
    assert translations["Forgot password?"] in page_text(page)


class TestEveryPageInGerman:
    DE = {"Accept-Language": "de"}

    def test_login_and_wrong_password(self, client, user, confidential_app):
        page = login_page(client, confidential_app, headers=self.DE)
        assert_german(page, "Anmelden", "Passwort vergessen?", "um mit")
        wrong = client.post(page.request["PATH_INFO"] + "?" + page.request["QUERY_STRING"],
                            {"username": user.username, "password": "nope"}, headers=self.DE)  # fmt: skip
        assert_german(wrong, "Benutzername oder Passwort ist falsch")

    def test_consent(self, client, user, confidential_app):
        login(client, user)
        page = client.get(authorize_url(confidential_app, ui_locales="de"))
        assert_german(page, "Diese Anwendung möchte:", "Erlauben", "Ablehnen", "Ihre E-Mail-Adresse sehen")

    def test_tenant_chooser(self, client, user, db):
        app = ApplicationFactory()
        for code in ("acme", "globex"):
            TenantMembershipFactory(user=user, tenant=TenantFactory(code=code, name=code.title()))
        login(client, user)
        page = client.get(authorize_url(app), headers=self.DE)
        assert page.templates[0].name == "oidc_provider_ext/tenant_chooser.html"
        assert_german(page, "Organisation wählen")

    def test_error_pages(self, client, confidential_app):
        page = client.get(authorize_url(confidential_app, acr_values="tenant:nope"), headers=self.DE)
        assert_german(page, "Unbekannte Organisation")
        page = client.get(
            authorize_url(confidential_app, redirect_uri="https://evil.example/cb"), headers=self.DE
        )
        assert_german(page, "Dieser Anmeldelink ist ungültig")

    def test_logout_pages(self, client, user, confidential_app):
        login(client, user)
        params = {"client_id": confidential_app.client_id, "ui_locales": "de"}
        page = client.get(reverse("oidc_provider_ext:endsession"), params)
        assert_german(page, "Angemeldet bleiben", "Abmelden")
        done = client.post(reverse("oidc_provider_ext:endsession"), {**params, "confirm": "yes"})
        assert_german(done, "Sie sind abgemeldet")

    def test_account_pages(self, client, user, confidential_app):
        login(client, user)
        assert_german(
            client.get(reverse("oidc_provider_ext:sessions"), headers=self.DE), "Wo Sie angemeldet sind"
        )
        assert_german(
            client.get(reverse("oidc_provider_ext:connected-apps"), headers=self.DE), "Verbundene Apps"
        )

    def test_password_reset_pages(self, client, user):
        form = client.get(reverse("oidc_provider_ext:password-reset"), headers=self.DE)
        assert_german(form, "Passwort zurücksetzen", "Link senden")
        sent = client.post(
            reverse("oidc_provider_ext:password-reset"), {"email": user.email}, headers=self.DE
        )
        assert_german(client.get(sent["Location"], headers=self.DE), "Prüfen Sie Ihre E-Mails")
        from django.core import mail

        assert "Wählen Sie hier ein neues Passwort" in mail.outbox[0].body
        done = client.get(reverse("oidc_provider_ext:password-reset-complete"), headers=self.DE)
        assert_german(done, "Passwort geändert")

    def test_lockout_page(self, client, user):
        # django-axes renders it outside the login view: AXES_LOCKOUT_CALLABLE keeps the language.
        for _ in range(5):
            response = client.post(
                reverse("oidc_provider_ext:login"),
                {"username": user.username, "password": "nope"},
                headers=self.DE,
            )
        assert response.status_code == 429
        assert_german(response, "Zu viele Anmeldeversuche", "Bitte warten Sie 15 Minuten")
        assert "PT15M" not in response.content.decode(), "the wait in minutes, not an ISO 8601 duration"
