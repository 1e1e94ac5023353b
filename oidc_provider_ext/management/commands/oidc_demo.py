"""Create (or refresh) demo data: a tenant, a user and two clients. Safe to run repeatedly: objects
are reused, and the user's password and the confidential client's secret are re-issued on every run
(they are stored hashed, so a new one is the only way to print a working one)."""

from __future__ import annotations

import json
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from oauth2_provider.models import get_application_model

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.models import ClientProfile, Tenant, TenantMembership

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/callback"
DEMO_USERNAME = "demo"
CONFIDENTIAL_CLIENT_ID = "demo-confidential"
PUBLIC_CLIENT_ID = "demo-public"
TENANT_CODE = "acme"


class Command(BaseCommand):
    help = "Create demo data (tenant 'acme', user 'demo', a confidential and a public client)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--redirect-uri",
            action="append",
            dest="redirect_uris",
            metavar="URI",
            help="Redirect URI of both clients (repeatable). Default: "
            + " ".join(self.default_redirect_uris()),
        )
        parser.add_argument("--json", action="store_true", help="Print only a JSON object.")

    @transaction.atomic
    def handle(self, *args, redirect_uris=None, json=False, **options):
        redirect_uris = redirect_uris or self.default_redirect_uris()
        password = secrets.token_urlsafe(12)
        client_secret = secrets.token_urlsafe(32)

        tenant, _ = Tenant.objects.get_or_create(code=TENANT_CODE, defaults={"name": "Acme Corporation"})
        User = get_user_model()
        user, _ = User.objects.get_or_create(
            **{User.USERNAME_FIELD: DEMO_USERNAME},
            defaults={"first_name": "Dana", "last_name": "Demo", "email": "demo@example.com"},
        )
        user.set_password(password)
        user.save()
        TenantMembership.objects.get_or_create(tenant=tenant, user=user)

        Application = get_application_model()
        common = {
            "redirect_uris": " ".join(redirect_uris),
            "post_logout_redirect_uris": " ".join(redirect_uris),
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
        }
        confidential, _ = Application.objects.update_or_create(
            client_id=CONFIDENTIAL_CLIENT_ID,
            defaults={
                **common,
                "name": "Demo web app (confidential)",
                "client_type": Application.CLIENT_CONFIDENTIAL,
                "client_secret": client_secret,
                "hash_client_secret": True,
            },
        )
        public, _ = Application.objects.update_or_create(
            client_id=PUBLIC_CLIENT_ID,
            defaults={
                **common,
                "name": "Demo single-page app (public)",
                "client_type": Application.CLIENT_PUBLIC,
                "client_secret": "",
                "hash_client_secret": False,
            },
        )
        for client in (confidential, public):
            # Requests without acr_values=tenant:<code> sign in to the demo tenant.
            ClientProfile.objects.update_or_create(
                application=client, defaults={"default_tenant_code": tenant.code}
            )

        data = {
            "issuer": app_settings.ISSUER,
            "user": {"username": DEMO_USERNAME, "password": password},
            "confidential": {
                "client_id": CONFIDENTIAL_CLIENT_ID,
                "client_secret": client_secret,
                "redirect_uri": redirect_uris[0],
            },
            "public": {"client_id": PUBLIC_CLIENT_ID, "redirect_uri": redirect_uris[0]},
            "tenant": TENANT_CODE,
        }
        self.demo_data_ready(data, user=user)
        if json:
            self.stdout.write(_dumps(data))
            return
        self.stdout.write(
            self.style.SUCCESS("Demo data ready.")
            + f"""
  Issuer:        {data["issuer"]}
  Discovery:     {data["issuer"]}/.well-known/openid-configuration
  User:          {DEMO_USERNAME} / {password}   (member of tenant '{TENANT_CODE}')
  Confidential:  client_id={CONFIDENTIAL_CLIENT_ID} client_secret={client_secret}
  Public:        client_id={PUBLIC_CLIENT_ID} (PKCE S256 required)
  Redirect URIs: {" ".join(redirect_uris)}

Try the flow: open
  {data["issuer"]}/connect/authorize?response_type=code&client_id={CONFIDENTIAL_CLIENT_ID}&redirect_uri={redirect_uris[0]}&scope=openid%20profile%20email%20offline_access&state=xyz&nonce=n-0S6
sign in, allow, copy the code from the redirect, then, within {app_settings.CODE_EXPIRE_SECONDS} s (a code
lives {app_settings.CODE_EXPIRE_SECONDS} s and works once; after that the answer is invalid_grant):
  curl -u {CONFIDENTIAL_CLIENT_ID}:{client_secret} -d grant_type=authorization_code \\
       -d code=CODE -d redirect_uri={redirect_uris[0]} {data["issuer"]}/connect/token
"""
        )

    def default_redirect_uris(self) -> list[str]:
        """Redirect URIs (and post-logout redirect URIs) of both clients when no ``--redirect-uri``
        is given; the first is the one printed. A site's own ``oidc_demo`` may override it (the
        example project's points at its demo relying party)."""
        return [DEFAULT_REDIRECT_URI]

    def demo_data_ready(self, data: dict, *, user, **kwargs) -> None:
        """Called inside the transaction once the demo data exists, with what will be printed
        (``data``, the ``--json`` object) and the demo ``user``: a site's own ``oidc_demo`` adds its
        data here. The default does nothing."""


def _dumps(data) -> str:
    return json.dumps(data, indent=None)
