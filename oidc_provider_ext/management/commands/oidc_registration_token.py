"""Initial access tokens for dynamic client registration (RFC 7591 3, REGISTRATION =
"initial_access_token"): ``create`` prints a new token once (it is stored hashed), ``list`` shows
them, ``revoke`` ends one."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from oidc_provider_ext.internal import registration
from oidc_provider_ext.models import InitialAccessToken


class Command(BaseCommand):
    help = "Create, list or revoke initial access tokens for the client registration endpoint."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
        create = actions.add_parser("create", help="Print a new token (shown once).")
        create.add_argument("--description", default="")
        create.add_argument("--days", type=float, default=7, help="Lifetime in days (default 7).")
        create.add_argument("--uses", type=int, default=1, help="Registrations it allows (default 1).")
        actions.add_parser("list", help="Tokens, their use and expiry.")
        revoke = actions.add_parser("revoke", help="Revoke a token by its id (from list).")
        revoke.add_argument("id", type=int)

    def handle(self, *args, action, **options):
        if action == "create":
            if options["days"] <= 0 or options["uses"] <= 0:
                raise CommandError("--days and --uses must be positive.")
            token = registration.create_initial_access_token(
                description=options["description"][:255], days=options["days"], max_uses=options["uses"]
            )
            self.stdout.write(token)
        elif action == "list":
            for row in InitialAccessToken.objects.order_by("-created"):
                state = "revoked" if row.revoked else ("usable" if row.usable else "spent or expired")
                self.stdout.write(
                    f"{row.pk}\t{row.description or '-'}\t{row.uses}/{row.max_uses}\t"
                    f"expires {row.expires:%Y-%m-%d %H:%M}\t{state}"
                )
        else:
            if not InitialAccessToken.objects.filter(pk=options["id"], revoked__isnull=True).update(
                revoked=timezone.now()
            ):
                raise CommandError(f"No live initial access token {options['id']}.")
            self.stdout.write(f"Revoked {options['id']}.")
