"""The example IdP on a real socket, for the relying parties of tests/interop, tests/e2e and
tests/conformance.

pytest-django's ``live_server`` runs the example project's URLconf in a thread; the issuer is set to
its URL so discovery, ``iss`` and every endpoint URL agree with what a client connects to. Clients
talk HTTP to it (never Django's test client), so these tests see the wire behaviour.

``UserAgent`` is a browser without JavaScript: it follows the IdP's redirects and submits the hosted
login and consent forms the way a browser does (ticked, enabled checkboxes only: the consent page's
``scope`` boxes, ``openid`` ticked and disabled), and hands back the redirect that leaves the IdP
(the RP's callback URL with ``code`` and ``state``, or an error). The relying party does not need to
listen on that URL.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from django.core.management import call_command

from .conftest import oidc_settings

# The demo clients' default redirect URI: nothing listens there, the callback is read from Location.
CALLBACK = "http://127.0.0.1:8765/callback"
INTEROP_DIR = Path(__file__).resolve().parent / "interop"
CHROMIUM = "/usr/bin/chromium"


def require(ok: bool, what: str, how: str) -> None:
    """A missing tool fails in CI (the project's setup must install it) and skips, with the reason
    printed, on a developer machine."""
    if ok:
        return
    message = f"{what} is missing: {how}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must install everything; see Makefile)", pytrace=False)
    pytest.skip(message)


def node_binary() -> str:
    node = shutil.which("node")
    require(node is not None, "Node.js", "install Node 20+ (apt-get install -y nodejs)")
    require(
        (INTEROP_DIR / "node_modules" / "openid-client").is_dir(),
        "tests/interop/node_modules",
        "run `make test` (it runs `npm ci --prefix tests/interop`)",
    )
    return node


def chromium_binary() -> str:
    require(
        os.access(CHROMIUM, os.X_OK),
        f"Chromium ({CHROMIUM})",
        "run `make test` as root, or `apt-get install -y chromium`",
    )
    return CHROMIUM


_open_sessions: list[requests.Session] = []


def http_session(session: requests.Session | None = None) -> requests.Session:
    """A ``requests`` session that is closed when the test ends."""
    session = session if session is not None else requests.Session()
    _open_sessions.append(session)
    return session


@pytest.fixture(scope="session")
def _live_server_connections(django_db_setup, django_db_blocker):
    """Ends the live server's database sessions before the test database is dropped.

    The live server serves each keep-alive connection in a thread that holds a database connection
    until the client closes the socket; a response kept alive by a failed test's traceback keeps its
    socket open, and PostgreSQL refuses to drop a database that is in use."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def live_issuer(live_server, settings, _live_server_connections):
    """The live server's URL, which is also the issuer (OIDC Discovery 4.3: they must be equal)."""
    oidc_settings(settings, ISSUER=live_server.url)
    yield live_server.url
    while _open_sessions:
        _open_sessions.pop().close()


def run_demo(*redirect_uris: str) -> dict:
    out = StringIO()
    args = [arg for uri in redirect_uris for arg in ("--redirect-uri", uri)]
    call_command("oidc_demo", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def demo(live_issuer) -> dict:
    """``manage.py oidc_demo --json``: the demo user, a confidential and a public client."""
    data = run_demo(CALLBACK)
    assert data["issuer"] == live_issuer
    return data


# --- a browser without JavaScript ------------------------------------------------------------------


@dataclass
class Form:
    """A ``<form>`` as a browser sees it. ``data`` is the form data set the browser submits (HTML,
    "constructing the entry list"): every named, enabled control in order, a checkbox or radio
    button only when it is checked (its value, default "on"), never a disabled control; the
    submitter button is added by ``submission``. ``controls`` names every named control, submitted
    or not, so a page can be recognised by what it contains."""

    action: str
    method: str
    data: list[tuple[str, str]] = field(default_factory=list)
    controls: set[str] = field(default_factory=set)
    buttons: list[tuple[str, str]] = field(default_factory=list)
    # checkboxes and radio buttons: name -> [(value, checked, disabled)]
    checkboxes: dict[str, list[tuple[str, bool, bool]]] = field(default_factory=dict)

    @property
    def fields(self) -> dict[str, str]:
        """The submitted values by name (the first one of a repeated name)."""
        fields: dict[str, str] = {}
        for name, value in self.data:
            fields.setdefault(name, value)
        return fields

    def submission(
        self, button: tuple[str, str] | None = None, *, uncheck=(), **overrides: str
    ) -> list[tuple[str, str]]:
        """What the browser posts when ``button`` is pressed: ``data`` without the checkboxes whose
        value is in ``uncheck`` (unticked by the user), with ``overrides`` typed into text fields,
        and the button's own name and value."""
        if button is not None:
            assert button in self.buttons, f"no {button} button in the form (it has {self.buttons})"
        data = [
            (name, overrides.get(name, value))
            for name, value in self.data
            if not (name in self.checkboxes and value in uncheck)
        ]
        data += [(name, value) for name, value in overrides.items() if name not in self.fields]
        if button is not None:
            data.append(button)
        return data


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[Form] = []
        self.open = False

    def handle_endtag(self, tag):
        if tag == "form":
            self.open = False

    def handle_starttag(self, tag, attrs):
        names = {name for name, _value in attrs}
        attrs = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(attrs.get("action", ""), attrs.get("method", "get").lower()))
            self.open = True
            return
        name = attrs.get("name")
        if not self.open or not name:
            return
        form = self.forms[-1]
        form.controls.add(name)
        kind = attrs.get("type", "submit" if tag == "button" else "text").lower()
        disabled = "disabled" in names
        if tag == "button" or kind in ("submit", "image", "button", "reset"):
            if kind == "submit" and not disabled:
                form.buttons.append((name, attrs.get("value", "")))
        elif tag == "input":
            if kind in ("checkbox", "radio"):
                checked = "checked" in names
                value = attrs.get("value", "on")
                form.checkboxes.setdefault(name, []).append((value, checked, disabled))
                if checked and not disabled:
                    form.data.append((name, value))
            elif not disabled:
                form.data.append((name, attrs.get("value", "")))


def forms_of(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


class UserAgent:
    """One user's browser: a cookie jar, redirects followed by hand, the hosted forms filled in."""

    def __init__(self, issuer: str, username: str = "", password: str = "", totp=None):
        self.issuer = issuer
        self.username, self.password = username, password
        self.totp = totp  # a pyotp.TOTP: the user's authenticator app, for the second-factor page
        self.http = http_session()
        self.pages: list[str] = []  # "login", "consent", … in the order they were shown
        self.asked: list[list[str]] = []  # the scope checkboxes of each consent page shown
        self.last: requests.Response | None = None

    def get(self, url: str, **kwargs) -> requests.Response:
        self.last = self.http.get(urljoin(self.issuer, url), allow_redirects=False, timeout=10, **kwargs)
        return self.last

    def post(self, url: str, data, **kwargs) -> requests.Response:
        self.last = self.http.post(
            urljoin(self.issuer, url), data=data, allow_redirects=False, timeout=10, **kwargs
        )
        return self.last

    def authorize(self, url: str, *, decision: str = "allow", password: str | None = None, uncheck=()) -> str:
        """Open ``url`` and go through sign-in and consent (unticking the scopes in ``uncheck``);
        return the URL the IdP finally redirects to outside itself. An IdP page that is neither
        login nor consent raises AssertionError."""
        self.pages = []
        self.asked = []
        return self.follow(self.get(url), decision=decision, password=password, uncheck=uncheck)

    def follow(self, response, *, decision: str = "allow", password: str | None = None, uncheck=()) -> str:
        """Continue from ``response`` like ``authorize``."""
        for _ in range(12):
            if response.is_redirect:
                location = urljoin(response.url, response.headers["Location"])
                if not location.startswith(self.issuer + "/"):
                    return location
                response = self.get(location)
                continue
            page = self.page_kind(response)
            self.pages.append(page)
            if page == "login":
                if password is None and self.pages.count("login") > 1:
                    raise AssertionError("the login page was shown again: the password was refused")
                response = self.submit_login(response, password=password)
                password = None
            elif page == "second-factor":
                assert self.totp is not None, f"the IdP asked for a second factor at {response.url}"
                form = self._form(response, "factor")
                response = self.submit(response, form, form.submission(factor="totp", code=self.totp.now()))
            elif page == "consent":
                form = self._form(response, "request_id")
                self.asked.append([value for value, _c, _d in form.checkboxes.get("scope", [])])
                response = self.submit_consent(response, decision, uncheck=uncheck)
            else:
                raise AssertionError(
                    f"the IdP showed an unexpected page (HTTP {response.status_code}) at {response.url}:\n"
                    f"{response.text[:800]}"
                )
        raise AssertionError("too many redirects at the IdP")

    @staticmethod
    def page_kind(response) -> str:
        """Which hosted page ``response`` is: login, second-factor (the challenge or step-up page),
        consent, logout (the confirmation), signed-out, error, or other."""
        if "text/html" not in response.headers.get("Content-Type", ""):
            return "other"
        for form in forms_of(response.text):
            if "password" in form.controls:
                return "login"
            if "factor" in form.controls:
                return "second-factor"
            if "request_id" in form.controls and "decision" in dict(form.buttons):
                return "consent"
            if ("confirm", "yes") in form.buttons:
                return "logout"
        if response.status_code >= 400:
            return "error"
        return "signed-out" if "You are signed out" in response.text else "other"

    def _form(self, response, marker: str) -> Form:
        form = next((f for f in forms_of(response.text) if marker in f.controls), None)
        assert form is not None, f"no form with {marker!r} at {response.url}"
        return form

    def submit(self, response, form: Form, data) -> requests.Response:
        """POST ``data`` to the form's action (resolved against the page's URL, as a browser does)."""
        return self.post(urljoin(response.url, form.action or response.url), data)

    def submit_login(self, response, password: str | None = None) -> requests.Response:
        form = self._form(response, "password")
        data = form.submission(username=self.username, password=password or self.password)
        return self.submit(response, form, data)

    def submit_consent(self, response, decision: str = "allow", uncheck=()) -> requests.Response:
        """Press Allow or Deny; the ticked scope checkboxes are posted as a browser posts them
        (``openid`` is ticked and disabled, so it is not sent), minus the scopes in ``uncheck``."""
        form = self._form(response, "request_id")
        return self.submit(response, form, form.submission(("decision", decision), uncheck=uncheck))

    def submit_logout(self, response) -> requests.Response:
        """Press "Sign out" on the RP-initiated logout confirmation page."""
        form = next((f for f in forms_of(response.text) if ("confirm", "yes") in f.buttons), None)
        assert form is not None, f"no sign-out confirmation form at {response.url}"
        return self.submit(response, form, form.submission(("confirm", "yes")))

    def login(self, password: str | None = None) -> requests.Response:
        """Sign in on the hosted login page directly (no authorization request)."""
        response = self.get("/connect/login")
        return self.submit_login(response, password=password)
