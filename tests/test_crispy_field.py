"""``{{ field|crispy_field }}`` (oidc_provider_ext/templatetags/oidc_forms.py): crispy's own HTML,
kept once per empty field and language; anything that changes the HTML is another key or is not
kept at all."""

import pytest
from crispy_forms.templatetags.crispy_forms_filters import as_crispy_field
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import translation

from oidc_provider_ext.forms import LoginForm
from oidc_provider_ext.templatetags import oidc_forms

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty():
    oidc_forms._rendered.clear()
    yield
    oidc_forms._rendered.clear()


def form(**kwargs):
    return LoginForm(request=RequestFactory().get("/"), **kwargs)


def test_an_empty_field_is_crispys_html_and_kept_once_per_language():
    for language in ("en", "de", "en"):
        with translation.override(language):
            for name in ("username", "password"):
                assert oidc_forms.crispy_field(form()[name]) == as_crispy_field(form()[name])
    assert len(oidc_forms._rendered) == 4  # two fields, two languages
    with translation.override("de"):
        assert "Passwort" in oidc_forms.crispy_field(form()["password"])


def test_a_value_errors_or_a_bound_form_are_rendered_each_time():
    prefilled = form(initial={"username": "alice@example.com"})["username"]
    assert 'value="alice@example.com"' in oidc_forms.crispy_field(prefilled)
    bound = form(data={"username": "bob", "password": ""})
    bound.is_valid()
    html = oidc_forms.crispy_field(bound["password"])
    assert html == as_crispy_field(bound["password"]) and "invalid" in html
    assert 'value="bob"' in oidc_forms.crispy_field(bound["username"])
    assert not oidc_forms._rendered


def test_another_attribute_label_or_form_class_is_another_key():
    plain = form()
    changed = form()
    changed.fields["username"].widget.attrs["placeholder"] = "name@acme.example"
    changed.fields["password"].label = "Passphrase"
    assert "placeholder" not in oidc_forms.crispy_field(plain["username"])
    assert 'placeholder="name@acme.example"' in oidc_forms.crispy_field(changed["username"])
    assert "Passphrase" in oidc_forms.crispy_field(changed["password"])
    assert "Passphrase" not in oidc_forms.crispy_field(plain["password"])

    class Other(LoginForm):
        pass

    other = Other(request=None)
    other.fields["username"].help_text = "Your work account"
    assert "Your work account" in oidc_forms.crispy_field(other["username"])
    assert len(oidc_forms._rendered) == 5


def test_the_sign_in_page_is_the_same_with_and_without_the_kept_html(confidential_app):
    import re

    from .flow import authorize_url

    def without_token(html):  # the CSRF token differs per page
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)

    login_url = Client().get(authorize_url(confidential_app))["Location"]
    Client().get(login_url)  # renders and keeps the fields
    kept = Client().get(login_url).content.decode()  # served the kept HTML
    oidc_forms._rendered.clear()
    fresh = Client().get(login_url).content.decode()  # crispy renders them again
    assert without_token(kept) == without_token(fresh)
    assert 'autocomplete="username webauthn"' in fresh and reverse("oidc_provider_ext:login") in fresh
