"""The extension class: everything a host site may customise about identities and claims.

Point ``OIDC_PROVIDER_EXT["ADAPTER"]`` at a subclass of :class:`DefaultOIDCAdapter` and override
the hooks you need. Every hook takes ``**kwargs`` so new arguments can be added without breaking
subclasses.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils.module_loading import import_string

from .conf import app_settings


class DefaultOIDCAdapter:
    """Default mapping from Django users to OpenID Connect identities."""

    def get_subject(self, user: AbstractBaseUser, **kwargs: Any) -> str:
        """The ``sub`` claim: stable, never reassigned, at most 255 ASCII characters (OIDC Core 2).

        The default is the user's primary key as a string.
        """
        return str(user.pk)

    def get_scope_description(self, scope: str, **kwargs: Any) -> str:
        """Human text for ``scope`` on the consent page."""
        return app_settings.SCOPES.get(scope, scope)

    def get_user_claims(self, user: AbstractBaseUser, scopes: list[str], **kwargs: Any) -> dict[str, Any]:
        """Standard claims released for the granted ``scopes`` (OIDC Core 5.4).

        Only non-empty values are returned: an RP must not see an empty ``email`` as a real one.
        """
        claims: dict[str, Any] = {}
        if "profile" in scopes:
            full_name = getattr(user, "get_full_name", lambda: "")()
            claims.update(
                name=full_name or None,
                given_name=getattr(user, "first_name", "") or None,
                family_name=getattr(user, "last_name", "") or None,
                preferred_username=user.get_username(),
            )
        if "email" in scopes:
            email = getattr(user, "email", "")
            if email:
                claims.update(email=email, email_verified=False)
        return {key: value for key, value in claims.items() if value is not None}


@lru_cache(maxsize=8)
def _adapter_for(path: str) -> DefaultOIDCAdapter:
    try:
        cls = import_string(path)
    except ImportError as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"OIDC_PROVIDER_EXT['ADAPTER'] = {path!r} cannot be imported: {exc}"
        ) from exc
    return cls()


def get_adapter() -> DefaultOIDCAdapter:
    """The configured adapter instance (one per class path)."""
    return _adapter_for(app_settings.ADAPTER)
