"""Authentication context classes (``acr``) and methods (``amr``) of a sign-in.

A leaf module: imports nothing of ours. The levels are ordered: a sign-in at a higher level
satisfies a request for a lower one (OIDC Core 3.1.2.1 ``acr_values``, 5.5.1.1 essential ``acr``).
``amr`` values are those of RFC 8176.
"""

from __future__ import annotations

from collections.abc import Iterable

PASSWORD = "urn:oidc-provider-ext:acr:password"
MFA = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
PHISHING_RESISTANT = "http://schemas.openid.net/pape/policies/2007/06/phishing-resistant"

#: Ascending strength.
LEVELS = (PASSWORD, MFA, PHISHING_RESISTANT)


def acr_for(amr: Iterable[str]) -> str:
    """The level the authentication methods ``amr`` (RFC 8176 values) reach."""
    methods = set(amr)
    key = "hwk" in methods or "swk" in methods
    factors = ("pwd" in methods) + ("otp" in methods) + key + (key and "user" in methods)
    if key and factors >= 2:
        return PHISHING_RESISTANT
    if factors >= 2:
        return MFA
    return PASSWORD


def amr_with_mfa(amr: Iterable[str]) -> list[str]:
    """``amr`` without duplicates (stable order), with "mfa" appended when it reaches MFA or more."""
    methods = list(dict.fromkeys(amr))
    if acr_for(methods) in (MFA, PHISHING_RESISTANT) and "mfa" not in methods:
        methods.append("mfa")
    return methods


def satisfies(achieved: str, required: str) -> bool:
    """Whether a sign-in at ``achieved`` meets a request for ``required`` (rank compare; a value
    outside :data:`LEVELS` satisfies only itself)."""
    if achieved == required:
        return True
    if achieved not in LEVELS or required not in LEVELS:
        return False
    return LEVELS.index(achieved) >= LEVELS.index(required)
