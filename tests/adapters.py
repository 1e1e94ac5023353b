"""Adapters the tests plug in through OIDC_PROVIDER_EXT["ADAPTER"]."""

from oidc_provider_ext.adapter import DefaultOIDCAdapter


class AddressPhoneAdapter(DefaultOIDCAdapter):
    """A site whose users also have an address and a phone number (Django's users have neither)."""

    claims_supported = (
        *DefaultOIDCAdapter.claims_supported,
        "address",
        "phone_number",
        "phone_number_verified",
    )

    def get_claim_values(self, user, **kwargs):
        values = super().get_claim_values(user, **kwargs)
        values["address"] = {"street_address": "1 Analytical Way", "locality": "London", "country": "GB"}
        values["phone_number"] = "+44 20 7946 0000"
        values["phone_number_verified"] = True
        return values
