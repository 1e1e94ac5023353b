"""The extension class: everything a host site may customise about identities and claims.

Point ``OIDC_PROVIDER_EXT["ADAPTER"]`` at a subclass of :class:`DefaultOIDCAdapter` and override
the hooks you need. Every hook takes ``**kwargs`` so new arguments can be added without breaking
subclasses.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from .conf import app_settings


class DefaultOIDCAdapter:
    """Default mapping from Django users to OpenID Connect identities."""

    def get_subject(self, user: AbstractBaseUser, **kwargs: Any) -> str:
        """The ``sub`` claim: stable, never reassigned, at most 255 ASCII characters (OIDC Core 2).

        The default is the user's primary key as a string.
        """
        return str(user.pk)

    def get_user_by_subject(self, subject: str, **kwargs: Any) -> AbstractBaseUser | None:
        """The active user whose ``sub`` is ``subject``, or None: the inverse of :meth:`get_subject`.

        Used by resource servers (``oidc_provider_ext.contrib.drf``) to turn a validated access
        token into ``request.user``. ``kwargs`` carries ``claims``, the validated
        :class:`~oidc_provider_ext.resource.AccessTokenClaims`.

        The default looks the user up by primary key, which is right only where the users table is
        the provider's own (the same project, or an API sharing its database). A user is returned
        only if :meth:`get_subject` gives back exactly ``subject``, so a site that overrides
        ``get_subject`` but not this hook gets None rather than the wrong user. Inactive users get
        None, as Django's ``ModelBackend`` refuses them.
        """
        user_model = get_user_model()
        try:
            pk = user_model._meta.pk.to_python(subject)
        except (ValidationError, TypeError, ValueError):
            return None  # e.g. a non-numeric subject and an integer primary key
        user = user_model._default_manager.filter(pk=pk).first()
        if user is None or not getattr(user, "is_active", True):
            return None
        return user if self.get_subject(user) == subject else None

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
