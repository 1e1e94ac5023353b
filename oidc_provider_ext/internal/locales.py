"""The language of the hosted pages. Private."""

from __future__ import annotations

from django.utils import translation

from oidc_provider_ext.conf import app_settings


def ui_language(ui_locales: str) -> str:
    """The first of the client's ``ui_locales`` this site offers (OIDC Core 3.1.2.1), else the
    current language."""
    available = set(app_settings.UI_LOCALES)
    for tag in ui_locales.split():
        tag = tag.lower()
        for candidate in (tag, tag.split("-")[0]):
            if candidate in available:
                return candidate
    return translation.get_language()
