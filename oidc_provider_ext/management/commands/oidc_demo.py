"""Create (or refresh) demo data: a tenant, a user and two clients. Safe to run repeatedly: objects
are reused, and every run prints the same user password and client secret unless ``--reset``.

The database stores only their hashes, so to print them again they are kept in a credentials file:
demo data, not a production secret. By default it sits next to a file-based SQLite database
(``db.sqlite3.demo-credentials.json``, mode 0600, gitignored); ``--credentials-file`` names another.
With neither (an in-memory or server database) they are re-issued on every run, as the output says."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import connections, transaction
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
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Issue a new password and client secret (the old ones stop working).",
        )
        parser.add_argument(
            "--credentials-file",
            metavar="PATH",
            help="Where the demo password and secret are kept between runs. Default: next to a "
            "SQLite database file (<db>.demo-credentials.json); none for other databases.",
        )

    @transaction.atomic
    def handle(self, *args, redirect_uris=None, json=False, reset=False, credentials_file=None, **options):
        redirect_uris = redirect_uris or self.default_redirect_uris()
        path = Path(credentials_file) if credentials_file else default_credentials_file()
        kept = {} if reset or path is None else _read(path)
        password = kept.get("password") or secrets.token_urlsafe(12)
        client_secret = kept.get("client_secret") or secrets.token_urlsafe(32)
        if path is not None:
            _write(path, {"password": password, "client_secret": client_secret})

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
        if path is None:
            kept_note = "re-issued on every run (no --credentials-file, and the database is no SQLite file)"
        else:
            kept_note = f"the same on every run (kept in {path}; --reset issues new ones)"
        self.stdout.write(
            self.style.SUCCESS("Demo data ready.")
            + f"""
  Issuer:        {data["issuer"]}
  Discovery:     {data["issuer"]}/.well-known/openid-configuration
  User:          {DEMO_USERNAME} / {password}   (member of tenant '{TENANT_CODE}')
  Confidential:  client_id={CONFIDENTIAL_CLIENT_ID} client_secret={client_secret}
  Public:        client_id={PUBLIC_CLIENT_ID} (PKCE S256 required)
  Redirect URIs: {" ".join(redirect_uris)}
  Password and secret are {kept_note}.

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


def default_credentials_file(alias: str = "default") -> Path | None:
    """``<db>.demo-credentials.json`` next to a file-based SQLite database, else None."""
    db = connections[alias].settings_dict
    name = str(db.get("NAME") or "")
    if (
        not db.get("ENGINE", "").endswith("sqlite3")
        or not name
        or ":memory:" in name
        or "mode=memory" in name
    ):
        return None
    return Path(name).with_name(Path(name).name + ".demo-credentials.json")


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items() if isinstance(value, str) and value}


def _write(path: Path, data: dict[str, str]) -> None:
    # Owner-only, created that way (no window in which another user can read it).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data) + "\n")


def _dumps(data) -> str:
    return json.dumps(data, indent=None)
