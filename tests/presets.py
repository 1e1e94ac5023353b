"""Named OIDC_PROVIDER_EXT overrides shared by several test modules.

``@pytest.mark.oidc_settings(presets.BEHIND_ONE_PROXY, CLIENT_AUTH_FAILURE_LIMIT=1)`` merges
presets, then keywords, into the site's OIDC_PROVIDER_EXT for one test (tests/conftest.py). Only
overrides used in more than one place belong here; a one-off override is a keyword.
"""

# The example project allows loopback for the test suite's receivers; production does not.
NO_LOOPBACK = {"OUTBOUND_ALLOWED_NETWORKS": []}

# One reverse proxy in front of the site: the X-Forwarded-For entry it appended is the client.
BEHIND_ONE_PROXY = {"TRUSTED_PROXY_COUNT": 1}

# Releases address and phone_number claims (tests/adapters.py).
ADDRESS_PHONE_ADAPTER = {"ADAPTER": "tests.adapters.AddressPhoneAdapter"}

# The reusable app's own adapter (the example project configures idp_project.adapter.ExampleAdapter):
# for tests about what a site without profile data advertises and releases.
DEFAULT_ADAPTER = {"ADAPTER": "oidc_provider_ext.adapter.DefaultOIDCAdapter"}

# Two API scopes beside the OIDC ones, for resource servers (RFC 8707 tests).
API_SCOPES = {
    "SCOPES": {
        "openid": "Sign you in",
        "profile": "See your profile",
        "email": "See your email address",
        "offline_access": "Stay connected",
        "api:read": "Read your data in the API",
        "api:write": "Change your data in the API",
    }
}
