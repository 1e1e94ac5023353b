"""Authentication context classes (``acr``) and methods (``amr``) of a sign-in here.

A leaf module: the values relying parties put in ``acr_values`` / the ``claims`` parameter
(OIDC Core 3.1.2.1, 5.5.1.1) and find in the ID token's ``acr``; ``amr`` values are RFC 8176's.

- :data:`PASSWORD`: something the user knows (a password), nothing else.
- :data:`MFA`: two independent factors (a password and a one-time code, a password and a passkey,
  or a passkey that verified its user).
- :data:`PHISHING_RESISTANT`: two factors, one of them a key bound to this origin (WebAuthn).
"""

from __future__ import annotations

from collections.abc import Iterable

PASSWORD = "urn:oidc-provider-ext:acr:password"
MFA = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
PHISHING_RESISTANT = "http://schemas.openid.net/pape/policies/2007/06/phishing-resistant"
#: Ascending strength: a level satisfies itself and every level before it.
LEVELS = (PASSWORD, MFA, PHISHING_RESISTANT)


def acr_for(amr: Iterable[str]) -> str:
    """The strongest level the methods ``amr`` (RFC 8176 values) reach together."""
    methods = set(amr)
    key = "hwk" in methods or "swk" in methods
    factors = ("pwd" in methods) + ("otp" in methods) + key + (key and "user" in methods)
    if key and factors >= 2:
        return PHISHING_RESISTANT
    if factors >= 2:
        return MFA
    return PASSWORD


def satisfies(achieved: str, required: str) -> bool:
    """Whether a sign-in at ``achieved`` meets ``required`` (a level meets the ones below it; a
    value outside :data:`LEVELS` meets only itself)."""
    if achieved == required:
        return True
    if achieved in LEVELS and required in LEVELS:
        return LEVELS.index(achieved) >= LEVELS.index(required)
    return False


def strongest(*values: str | None) -> str | None:
    """The strongest of the given levels (None and "" ignored; unknown values rank lowest)."""
    known = [value for value in values if value]
    if not known:
        return None
    return max(known, key=lambda value: LEVELS.index(value) if value in LEVELS else -1)


def amr_with_mfa(amr: Iterable[str]) -> list[str]:
    """``amr`` without repeats, in order, with ``mfa`` (RFC 8176 2) when it reaches MFA or more."""
    methods = [method for method in dict.fromkeys(amr) if method != "mfa"]
    if acr_for(methods) != PASSWORD:
        methods.append("mfa")
    return methods
