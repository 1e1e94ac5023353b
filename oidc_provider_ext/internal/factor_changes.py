"""Who may change a user's second factors in this browser (set up or remove the authenticator app,
make new recovery codes, add or remove a passkey): the one guard of views/security.py and
views/passkeys.py.

A recent sign-in (``MFA_REAUTH_SECONDS``) is not enough: django.contrib.auth's and the admin's
login pages ask no second factor, so a password-only session must not take the factor away, read
new recovery codes or plant a factor of its own. The session must also reach the level the user
must sign in with anyway, ``adapter.minimum_acr(user, None, tenant)`` (multi-factor once the user
has a factor); a recent session below it is sent to the account step-up page, an old one to sign
in again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.http import HttpRequest

from oidc_provider_ext import acr
from oidc_provider_ext.adapter import get_adapter
from oidc_provider_ext.conf import app_settings

from . import factors, op_sessions


@dataclass(frozen=True)
class Standing:
    """``allowed``; otherwise ``session`` is the recent sign-in to step up (None: sign in again)
    and ``required`` the level it must reach."""

    allowed: bool
    tenant: str = op_sessions.NO_TENANT
    session: op_sessions.CurrentSession | None = None
    required: str = acr.PASSWORD


def _required(user, tenant: str, session: op_sessions.CurrentSession, enrolled: list) -> str:
    required = get_adapter().minimum_acr(user, None, tenant) or acr.PASSWORD
    if acr.satisfies(session.acr, required) or factors.factors_reaching(enrolled, session.amr, required):
        return required
    # A level the user's factors cannot reach (a tenant asking for a passkey the user has yet to
    # add) must not lock them out of adding it: what their factors do reach is asked instead.
    return acr.MFA if enrolled else acr.PASSWORD


def standing(request: HttpRequest) -> Standing:
    """Whether this browser may change the signed-in user's second factors now."""
    user = request.user
    now = time.time()
    recent = sorted(
        (
            (tenant, op_sessions.CurrentSession(**entry))
            for tenant, entry in op_sessions.browser_entries(request).items()
            if now - entry["auth_time"] <= app_settings.MFA_REAUTH_SECONDS
        ),
        key=lambda pair: pair[1].auth_time,
        reverse=True,
    )
    if not recent:
        return Standing(allowed=False)
    enrolled = factors.enrolled_factors(user)
    for tenant, session in recent:
        if acr.satisfies(session.acr, _required(user, tenant, session, enrolled)):
            return Standing(allowed=True, tenant=tenant, session=session, required=session.acr)
    tenant, session = recent[0]
    return Standing(
        allowed=False, tenant=tenant, session=session, required=_required(user, tenant, session, enrolled)
    )


def step_up_factors(request: HttpRequest, wanted: Standing) -> list:
    """The user's factors that take ``wanted.session`` to ``wanted.required``."""
    if wanted.session is None:
        return []
    return factors.factors_reaching(
        factors.enrolled_factors(request.user), wanted.session.amr, wanted.required
    )
