"""The example project's ``oidc_demo``: the app's command (tenant, user, clients), plus

* the demo user's profile (address and phone number: the example advertises those scopes, so the
  demo user has every claim they release), and
* the demo relying party at ``<issuer>/demo-rp/`` as the clients' default redirect URI, with the
  confidential client's credentials written to ``DEMO_RP["CREDENTIALS_FILE"]`` for it to read
  (docs/demo.md).
"""

from __future__ import annotations

from django.urls import reverse

from idp_project import demo_rp
from idp_project.models import Profile
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.management.commands import oidc_demo

DEMO_PROFILE = {
    "phone_number": "+1 (425) 555-1212",
    "phone_number_verified": True,
    "street_address": "1234 Hollywood Blvd.",
    "locality": "Los Angeles",
    "region": "CA",
    "postal_code": "90210",
    "country": "US",
}


class Command(oidc_demo.Command):
    help = oidc_demo.Command.help + " Also fills the demo user's profile and sets up the demo relying party."

    def default_redirect_uris(self) -> list[str]:
        issuer = app_settings.ISSUER
        # The callback first (the printed URL uses it), then where RP-initiated logout returns.
        return [issuer + reverse("demo_rp:callback"), issuer + reverse("demo_rp:logged-out")]

    def demo_data_ready(self, data: dict, *, user, **kwargs) -> None:
        Profile.objects.update_or_create(user=user, defaults=DEMO_PROFILE)
        demo_rp.write_credentials(data["confidential"])

    def handle(self, *args, **options):
        super().handle(*args, **options)
        if not options.get("json"):
            playground = app_settings.ISSUER + reverse("demo_rp:home")
            self.stdout.write(
                f"Or let the demo relying party do all of it: open {playground}\n"
                f"  (the OIDC playground: one click, then the ID token, access token and userinfo)\n"
            )
