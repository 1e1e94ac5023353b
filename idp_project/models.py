"""What the example IdP knows about its users beyond Django's user model: the data behind the
``address`` and ``phone`` scopes it advertises (OIDC Core 5.1, 5.4), read by
:class:`idp_project.adapter.ExampleAdapter`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Profile(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idp_profile"
    )
    # OIDC Core 5.1: E.164 is RECOMMENDED, e.g. "+1 (425) 555-1212" or "+56 (2) 687 2400".
    phone_number = models.CharField(max_length=40, blank=True)
    phone_number_verified = models.BooleanField(
        default=False, help_text="Whether the site has verified the phone number (e.g. by a text message)."
    )
    # OIDC Core 5.1.1: the address claim's members.
    street_address = models.TextField(blank=True, help_text="Street, house number, … (may span lines).")
    locality = models.CharField("city", max_length=100, blank=True)
    region = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return f"Profile of {self.user}"

    def address(self) -> dict[str, str]:
        """The ``address`` claim (OIDC Core 5.1.1): the members that are set, and ``formatted``."""
        parts = {
            "street_address": self.street_address,
            "locality": self.locality,
            "region": self.region,
            "postal_code": self.postal_code,
            "country": self.country,
        }
        address = {name: value for name, value in parts.items() if value}
        if address:
            city = " ".join(value for value in (self.postal_code, self.locality) if value)
            lines = [self.street_address, city, self.region, self.country]
            address["formatted"] = "\n".join(line for line in lines if line)
        return address

    def claims(self) -> dict[str, Any]:
        """The claims this profile has a value for (an empty one is left out, never sent as "")."""
        values: dict[str, Any] = {}
        if address := self.address():
            values["address"] = address
        if self.phone_number:
            values["phone_number"] = self.phone_number
            values["phone_number_verified"] = self.phone_number_verified
        return values
