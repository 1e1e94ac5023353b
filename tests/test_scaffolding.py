"""The test suite's own tools: the oidc_settings marker (tests/conftest.py, tests/presets.py)."""

import pytest
from django.conf import settings

from oidc_provider_ext.conf import app_settings

from . import presets


@pytest.mark.oidc_settings(presets.BEHIND_ONE_PROXY, CODE_EXPIRE_SECONDS=30, JWKS_MAX_AGE_SECONDS=60)
class TestOidcSettingsMarker:
    @pytest.mark.oidc_settings(CODE_EXPIRE_SECONDS=20)
    def test_presets_and_keywords_merge_and_the_closest_marker_wins(self):
        assert app_settings.TRUSTED_PROXY_COUNT == 1
        assert app_settings.CODE_EXPIRE_SECONDS == 20
        assert app_settings.JWKS_MAX_AGE_SECONDS == 60
        # Merged into the site's dict, not replacing it.
        assert settings.OIDC_PROVIDER_EXT["OUTBOUND_ALLOWED_NETWORKS"] == ["127.0.0.0/8", "::1/128"]


def test_without_a_marker_the_site_settings_are_untouched():
    assert "TRUSTED_PROXY_COUNT" not in settings.OIDC_PROVIDER_EXT
