"""Every private DOT / oauthlib name we depend on is listed (docs/architecture.md) and still there.

A DOT or oauthlib upgrade that renames or removes one fails here, naming it, instead of silently
turning an override into dead code (an override of a name DOT no longer calls changes nothing).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from oauth2_provider.oauth2_backends import OAuthLibCore
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749.grant_types import AuthorizationCodeGrant as OAuth2CodeGrant
from oauthlib.oauth2.rfc6749.grant_types.base import GrantTypeBase
from oauthlib.oauth2.rfc8628.grant_types import DeviceCodeGrant
from oauthlib.openid.connect.core.grant_types import AuthorizationCodeGrant as OpenIDCodeGrant

from oidc_provider_ext import server
from oidc_provider_ext.validator import OIDCValidator

DOCS = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"

# (owner, name, what DOT/oauthlib must still do with it for our use to mean anything)
PRIVATE_NAMES = [
    (OAuth2Validator, "_load_application", "validate_client_id"),
    (OAuth2Validator, "_check_secret", "_authenticate_basic_auth"),
    (OAuth2Validator, "_load_access_token", "validate_bearer_token"),
    (OAuth2Validator, "_extract_basic_auth", "_authenticate_basic_auth"),
    (OAuth2Validator, "_create_access_token", None),  # ours calls it
    (OAuth2Validator, "_create_refresh_token", None),
    (OAuth2Validator, "_set_token_value", None),
    (OAuth2Validator, "_get_key_for_token", "_load_id_token"),
    (OAuthLibCore, "_extract_params", None),
    (OAuth2CodeGrant, "_code_challenge_methods", "validate_token_request"),
    (OpenIDCodeGrant, "_inflate_claims", "openid_authorization_validator"),
    # server.DeviceCodeGrant.create_token_response: oauthlib's, plus the token modifiers it skips.
    (GrantTypeBase, "_get_default_headers", None),
    (DeviceCodeGrant(), "_token_modifiers", None),  # an instance attribute (GrantTypeBase.__init__)
]


@pytest.mark.parametrize(("owner", "name", "caller"), PRIVATE_NAMES, ids=lambda v: getattr(v, "__name__", v))
def test_each_private_name_still_exists(owner, name, caller):
    found = inspect.getattr_static(owner, name, None)
    assert found is not None, (
        f"{owner.__module__}.{owner.__qualname__}.{name} is gone: our override/call is dead"
    )


@pytest.mark.parametrize(
    ("owner", "name", "caller"),
    [entry for entry in PRIVATE_NAMES if entry[2]],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_dot_still_calls_what_we_override(owner, name, caller):
    # An override only matters while the library's own code path goes through it.
    assert re.search(rf"\bself\.{re.escape(name)}\b", inspect.getsource(getattr(owner, caller))), (
        f"{owner.__qualname__}.{caller} no longer uses {name}: our override of it is dead"
    )


def test_our_openid_code_grant_init_still_matches_oauthlibs():
    # server.S256OnlyOIDCCodeGrant.__init__ repeats oauthlib's with another proxy target.
    source = inspect.getsource(OpenIDCodeGrant.__init__)
    for statement in (
        "self.proxy_target =",
        "self.custom_validators.post_auth.append",
        "self.register_token_modifier",
    ):
        assert statement in source, f"oauthlib's OpenID AuthorizationCodeGrant.__init__ changed: {statement}"
    grant = server.S256OnlyOIDCCodeGrant(OIDCValidator())
    assert set(grant.proxy_target._code_challenge_methods) == {"S256"}


def _overridden_private_names(cls, base) -> set[str]:
    return {
        name
        for name, value in vars(cls).items()
        if name.startswith("_") and not name.startswith("__") and callable(value) and hasattr(base, name)
    }


def test_every_private_override_is_listed():
    listed = {name for owner, name, _caller in PRIVATE_NAMES if owner is OAuth2Validator}
    assert _overridden_private_names(OIDCValidator, OAuth2Validator) <= listed
    listed_core = {name for owner, name, _caller in PRIVATE_NAMES if owner is OAuthLibCore}
    assert _overridden_private_names(server.OAuthLibCore, OAuthLibCore) <= listed_core


def test_register_token_modifier_still_feeds_token_modifiers():
    grant = DeviceCodeGrant()
    modifier = object()
    grant.register_token_modifier(modifier)
    assert modifier in grant._token_modifiers


def test_the_docs_list_the_same_names():
    section = (
        DOCS.read_text().split("## Private DOT and oauthlib names we depend on", 1)[1].split("\n## ", 1)[0]
    )
    documented = set(re.findall(r"^\| [^|]+ \| `(_[a-z_]+)` \|", section, flags=re.M))
    assert documented == {name for _owner, name, _caller in PRIVATE_NAMES}


# Our token, revocation and userinfo views name DOT's dispatch without the method decorators DOT
# puts on it (re-applied on every request) and apply those decorators once to the view function
# (views/backchannel.py form_endpoint, views/userinfo.py). That is right only while DOT's are exactly
# csrf_exempt and login_not_required around that dispatch: a decorator DOT adds fails here.
@pytest.mark.parametrize(
    ("dot_view", "undecorated"),
    [
        ("TokenView", "django.views.generic.base.View.dispatch"),
        ("RevokeTokenView", "django.views.generic.base.View.dispatch"),
        ("UserInfoView", "oauth2_provider.views.mixins.OIDCOnlyMixin.dispatch"),
    ],
)
def test_dots_dispatch_decorators_are_the_ones_we_apply_once(dot_view, undecorated):
    from oauth2_provider import views as dot_views

    view_class = getattr(dot_views, dot_view)
    layers, dispatch = 0, view_class.dispatch
    while hasattr(dispatch, "__wrapped__"):
        layers, dispatch = layers + 1, dispatch.__wrapped__
    assert f"{dispatch.__module__}.{dispatch.__qualname__}" == undecorated
    assert layers == 2, (
        f"DOT's {dot_view}.dispatch has {layers} decorators, not csrf_exempt and login_not_required"
    )
    markers = {
        k: v for k, v in vars(view_class.as_view()).items() if k not in ("view_class", "view_initkwargs")
    }
    markers.pop("__wrapped__", None)
    assert markers == {"csrf_exempt": True, "login_required": False}
