"""The example IdP's adapter: Django's user plus :class:`idp_project.models.Profile`, so every claim
of every scope the example advertises (``profile email address phone``) can really be released."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from oidc_provider_ext.adapter import DefaultOIDCAdapter

from .models import Profile

PROFILE_CLAIMS = frozenset({"address", "phone_number", "phone_number_verified"})


class ExampleAdapter(DefaultOIDCAdapter):
    claims_supported = (*DefaultOIDCAdapter.claims_supported, *sorted(PROFILE_CLAIMS))

    def get_claim_values(
        self, user: Any, wanted: Collection[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        values = super().get_claim_values(user, wanted=wanted, **kwargs)
        # One query, and only when a profile claim is to be released (token and userinfo requests
        # for `openid` alone stay within their query budgets, tests/test_queries.py).
        if wanted is None or PROFILE_CLAIMS & set(wanted):
            profile = Profile.objects.filter(user_id=user.pk).first()
            if profile is not None:
                values.update(profile.claims())
        return values
