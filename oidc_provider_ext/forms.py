from crispy_forms.helper import FormHelper
from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from .adapter import get_adapter
from .internal import factors


class LoginForm(AuthenticationForm):
    """Django's authentication form, laid out by crispy-forms, scoped to a tenant when one is given.

    The page shows its non-field errors in one box (login.html); crispy renders the fields only.
    """

    error_messages = {
        **AuthenticationForm.error_messages,
        # One generic message: it must not tell a wrong username from a wrong password.
        "invalid_login": _("The username or password is not correct. Please try again."),
    }

    def __init__(self, *args, tenant=None, **kwargs):
        self.tenant = tenant
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_tag = False
        # The page's <form> carries the one CSRF token; a second one would be a repeated parameter,
        # which the request boundary refuses (RFC 6749 3.1 applies to every endpoint here).
        self.helper.disable_csrf = True
        # "webauthn": the browser offers passkeys in the username field's autofill (WebAuthn L3
        # 5.1.4.1 conditional mediation, static/oidc_provider_ext/passkeys.js).
        self.fields["username"].widget.attrs.update(autocomplete="username webauthn", autofocus=True)
        self.fields["password"].widget.attrs.update(autocomplete="current-password")

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        # The one membership hook (an active member of an active tenant), as at every token use,
        # read with the second-factor question the page asks next (one statement).
        if self.tenant is None:
            return
        code = self.tenant.code.lower()
        hint = factors.read_with_membership(self.request, user, code) if self.request is not None else None
        if not get_adapter().is_member_of(user, code, **({"member_hint": hint} if hint else {})):
            # Exactly the wrong-password error: a non-member must not learn the account exists.
            raise self.get_invalid_login_error()


class ConsentForm(forms.Form):
    """Carries only an opaque id: the authorization request itself stays server-side."""

    ALLOW = "allow"
    DENY = "deny"

    request_id = forms.CharField(widget=forms.HiddenInput, max_length=64)
    decision = forms.ChoiceField(choices=[(ALLOW, _("Allow")), (DENY, _("Deny"))], widget=forms.HiddenInput)
